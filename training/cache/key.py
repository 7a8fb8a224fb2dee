"""What a latent cache was made with, as keys: the model side and the whole cache.

* :func:`encoder_identity` / :func:`encoder_key`: the encoders that made the latents (codec,
  text and image encoder configs without their folder paths, plus a checksum of every file in
  their folders: weights, configs, tokenizer), the clip geometry and the cache format. Training
  recomputes it from its model config and refuses a cache whose key differs
  (:func:`check_latent_cache`), so a moved model folder is fine and changed weights are not.
* :func:`cache_key`: the encoder key plus the storage dtype and the sha256 of every source
  shard: two caches with the same key hold the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from contracts.schema import SCHEMA_VERSION
from genprop.configs import GenPropConfig
from genprop.modeling.learned_codec import CONFIG_NAME as CODEC_CONFIG
from genprop.modeling.learned_codec import WEIGHTS_NAME as CODEC_WEIGHTS

CACHE_FORMAT = 1
MANIFEST = "manifest.json"
_BLOCK = 8 << 20


class LatentCacheError(ValueError):
    """A latent cache is missing, unreadable or was made for another model."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _cached_file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def folder_digest(*folders: Path) -> str:
    """One sha256 over every file under ``folders`` (relative name + content hash, sorted)."""
    h = hashlib.sha256()
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing folder (needed for the encoder checksum)")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            st = path.stat()
            digest = _cached_file_sha256(str(path), st.st_size, st.st_mtime_ns)
            h.update(f"{folder.name}/{path.relative_to(folder).as_posix()}:{digest}\n".encode())
    return h.hexdigest()


# CodecConfig fields only a ``learned`` codec reads (genprop/modeling/learned_codec.py).
LEARNED_FIELDS = frozenset({"latent_channels", "width", "downsamples", "unshuffle", "linear_skip"})


def _text_folders(path: str) -> list[Path]:
    root = Path(path)
    if (root / "text_encoder").is_dir() and (root / "tokenizer").is_dir():
        return [root / "text_encoder", root / "tokenizer"]
    return [root]


def encoder_identity(config: GenPropConfig) -> dict[str, Any]:
    """The encoder side of a config as plain JSON (see module docstring)."""
    # The learned codec's architecture fields name no latent of the other kinds: left out for
    # them, so the keys of caches written before those fields existed stay the same.
    unused = {"path", "vae_config"} | (set() if config.codec.kind == "learned" else LEARNED_FIELDS)
    codec = {k: v for k, v in config.to_dict()["codec"].items() if k not in unused}
    text = {k: v for k, v in config.to_dict()["text"].items() if k != "path"}
    files: dict[str, str] = {}
    if config.codec.kind == "wan_vae":
        if config.codec.path is None:  # built from an inline config: its config is the identity
            codec["vae_config"] = config.codec.vae_config
        else:
            files["vae"] = folder_digest(Path(config.codec.path) / (config.codec.subfolder or ""))
    elif config.codec.kind == "learned" and config.codec.path is not None:
        # A retrained codec (same architecture, new weights) makes different latents.
        # Its two files by content (the folder's name plays no part: a moved codec keeps its key).
        root = Path(config.codec.path)
        files["codec"] = digest({n: file_sha256(root / n) for n in (CODEC_CONFIG, CODEC_WEIGHTS)})
    if config.text.kind == "transformers" and config.text.path:
        files["text_encoder"] = folder_digest(*_text_folders(config.text.path))
    image_path = getattr(config.backbone, "image_encoder_path", None)
    if image_path:
        root = Path(image_path)
        files["image_encoder"] = folder_digest(root / "image_encoder", root / "image_processor")
    return {
        "format": CACHE_FORMAT,
        "pixel_schema": SCHEMA_VERSION,
        "geometry": {
            "num_frames": config.num_frames,
            "height": config.height,
            "width": config.width,
        },
        "codec": codec,
        "text": text,
        "image_encoder": bool(image_path),
        "content_gate": config.content_gate,
        "files": files,
    }


def digest(data: Any) -> str:
    """First 16 hex of the sha256 of ``data``'s canonical JSON."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def encoder_key(config: GenPropConfig) -> str:
    """The key training checks (:func:`encoder_identity`, hashed)."""
    return digest(encoder_identity(config))


def cache_key(enc_key: str, dtype: str, sources: dict[str, str]) -> str:
    """The whole cache's key: encoder key, storage dtype, source shards (name -> sha256)."""
    return digest({"encoder_key": enc_key, "dtype": dtype, "sources": sorted(sources.items())})


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """``manifest.json`` of a latent cache folder.

    Raises:
        LatentCacheError: one line naming the file when it is missing or not a cache manifest.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise LatentCacheError(
            f"data.latents: {path} missing (not a finished genprop-cache folder; run or rerun "
            "genprop-cache)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LatentCacheError(f"data.latents: {path}: unreadable ({err})") from None
    for field in ("encoder_key", "key", "samples", "shards", "identity"):
        if not isinstance(manifest, dict) or field not in manifest:
            raise LatentCacheError(f"data.latents: {path}: field {field!r} missing")
    return manifest


def check_latent_cache(folder: str | Path, config: GenPropConfig) -> dict[str, Any]:
    """The manifest of the cache at ``folder``, checked against the model ``config``.

    Raises:
        LatentCacheError: naming both encoder keys (and which parts differ) when the cache was
            made with other encoders, geometry or format; or when it holds no sample.
    """
    manifest = read_manifest(folder)
    path = Path(folder) / MANIFEST
    identity = encoder_identity(config)
    expected = digest(identity)
    found = manifest["encoder_key"]
    if found != expected:
        theirs = manifest["identity"] if isinstance(manifest["identity"], dict) else {}
        parts = [k for k in identity if k != "files" and identity[k] != theirs.get(k)]
        files = theirs.get("files") or {}
        parts += [f"{k} weights" for k in identity["files"] if identity["files"][k] != files.get(k)]
        raise LatentCacheError(
            f"data.latents: {path} has encoder key {found}, this model needs {expected} "
            f"(differs in: {', '.join(parts) or 'key only'}); rebuild it with genprop-cache "
            "for this model"
        )
    if not manifest["samples"]:
        raise LatentCacheError(f"data.latents: {path}: the cache holds no sample")
    return manifest
