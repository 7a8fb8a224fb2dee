"""``run_cache(cfg)``: pixel shards -> latent shards for one model, with Ray (or in-process).

1. The driver builds the model config (``model.net``, as ``genprop-train`` does), its encoder key
   (:mod:`training.cache.key`) and the job key (+ storage dtype), and claims ``output_dir``
   (:mod:`contracts.ownership`: a new or empty folder, or its own marker with this job key, else
   refused unless ``overwrite``; locked for the whole job); finished output shards of this job
   whose source is unchanged are skipped (resume after any kill).
2. One task per remaining input shard (:func:`training.cache.shard_job.cache_shard`), plus one
   for the empty prompt's embedding. Ray retries a task whose worker died or raised; a shard
   that still fails is recorded and the others go on.
3. ``manifest.json`` is written last (samples, errors, the keys, every shard with the sha256 of
   its source and of its output) with ``errors.jsonl`` (bad samples with reasons).

Without ``ray.address`` the job starts its own local Ray; ``ray.enabled=false`` runs in-process.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from contracts.jobs import (
    clear_other_jobs,
    failed_shards_line,
    run_shard_tasks,
    write_json_atomic,
    write_jsonl,
)
from contracts.jsonfile import read_json_object
from contracts.ownership import (
    MARKER,
    FolderClaim,
    FolderError,
    owned_folder,
    remove_own_temporaries,
)
from contracts.schema import SCHEMA_VERSION
from contracts.shard_spec import expand_shards
from training.cache.key import (
    CACHE_FORMAT,
    MANIFEST,
    LatentCacheError,
    cache_key,
    digest,
    encoder_identity,
)
from training.cache.latent_sample import DTYPES, EMPTY_PROMPT, read_storage_metadata
from training.cache.ray_jobs import submit_to_ray
from training.cache.shard_job import CacheSpec, cache_shard, finished_stats, write_empty_prompt
from training.model_factory import build_config

TOOL = "genprop-cache"


class CacheJobFailed(RuntimeError):  # noqa: N818 - reads as what happened to the job
    """Shards failed, or the job produced no sample; the manifest is written first."""


def _model_config(cfg: dict[str, Any]) -> Any:
    net = (cfg.get("model") or {}).get("net") or {}
    return build_config(
        preset_name=net.get("preset_name"),
        overrides=net.get("overrides") or {},
        pretrained=net.get("pretrained"),
        pretrained_kind=net.get("pretrained_kind", "wan"),
    )


def _sources(spec: Any) -> list[Path]:
    paths = [
        Path(p)
        for p in expand_shards(spec, field="data.shards", remote=False, error=LatentCacheError)
    ]
    names = [p.stem for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LatentCacheError(f"data.shards: two input shards are named {dup[0]!r}")
    return paths


def _check_output(out: Path, job_key: str, overwrite: bool) -> None:
    """Refuse a folder holding another job's shards (or clear them with ``overwrite``).

    Only shards whose stats a ``genprop-cache`` job wrote count (and are cleared); other files
    are not this job's and are left alone.
    """

    def refusal(path: Path, other: Any) -> LatentCacheError:
        return LatentCacheError(
            f"output_dir: {out} holds a cache of another model or dtype ({path.name}: job key "
            f"{other!r}, this job: {job_key!r}); use a new output_dir or overwrite=true"
        )

    clear_other_jobs(
        [p for p in sorted(out.glob("*.json")) if _stats_job(p) is not None],
        key_field="job_key",
        key=job_key,
        overwrite=overwrite,
        refusal=refusal,
    )


def _stats_job(path: Path) -> str | None:
    """The job key of ``path`` when it is a cache shard's stats file, else ``None``."""
    if path.name in (MANIFEST, MARKER):
        return None
    try:
        stats = read_json_object(path, what="cache shard stats")
    except ValueError:
        return None
    key = stats.get("job_key")
    return key if isinstance(key, str) and stats.get("tar") == f"{path.stem}.tar" else None


def earlier_cache(out: Path) -> str | None:
    """The job key of a ``genprop-cache`` folder written before owner markers existed (from its
    manifest, else from its shard stats), or ``None`` when it is not one."""
    try:
        manifest = read_json_object(out / MANIFEST, what="cache manifest")
    except ValueError:
        manifest = {}
    key = manifest.get("job_key")
    if isinstance(key, str) and "format" in manifest and "encoder_key" in manifest:
        return key
    for path in sorted(out.glob("*.json")):
        found = _stats_job(path)
        if found is not None:
            return found
    return None


def _other_cache(out: Path, marker: dict[str, Any], *, job_key: str, dtype: str) -> str:
    theirs = marker.get("cache") if isinstance(marker.get("cache"), dict) else {}
    return (
        f"output_dir: {out} holds a cache of another model or dtype ({MARKER}: dtype "
        f"{theirs.get('dtype', '?')}, job key {marker.get('config_hash')!r}; this job: dtype "
        f"{dtype}, job key {job_key!r}); use a new output_dir or overwrite=true"
    )


def _refuse_strays(out: Path, todo: list[Path], claim: FolderClaim) -> None:
    """Refuse to replace a tar this tool did not record in the folder's marker (unless
    ``overwrite``): a tar of ours without stats is one a killed run left, any other is foreign."""
    if claim.fresh or claim.taken_over or not claim.previous or claim.previous.get("adopted"):
        return
    known = claim.known_outputs()
    strays = [s.stem for s in todo if s.stem not in known and (out / f"{s.stem}.tar").exists()]
    if strays:
        raise LatentCacheError(
            f"output_dir: {out / strays[0]}.tar was not written by this job (not in {MARKER}); "
            "move it away or pass overwrite=true to replace it"
        )


def run_cache(cfg: dict[str, Any]) -> dict[str, Any]:
    """Build (or finish) the latent cache described by the ``genprop_cache`` config.

    Returns:
        The manifest (also written to ``output_dir/manifest.json``).

    Raises:
        LatentCacheError: bad options or inputs (one line).
        CacheJobFailed: after writing the manifest, when shards failed or no sample was written.
    """
    dtype = str(cfg.get("dtype", "bf16"))
    if dtype not in DTYPES:
        raise LatentCacheError(f"dtype: {dtype!r}, expected one of {', '.join(DTYPES)}")
    batch_size = int(cfg.get("batch_size", 4))
    if batch_size < 1:
        raise LatentCacheError(f"batch_size: {batch_size}, expected >= 1")
    sources = _sources(cfg["data"]["shards"])
    config = _model_config(cfg)
    identity = encoder_identity(config)
    enc_key = digest(identity)
    job_key = digest({"encoder_key": enc_key, "dtype": dtype, "format": CACHE_FORMAT})
    out = Path(str(cfg["output_dir"])).expanduser().resolve()
    overwrite = bool(cfg.get("overwrite", False))
    record = {"job_key": job_key, "encoder_key": enc_key, "dtype": dtype, "format": CACHE_FORMAT}
    try:
        with owned_folder(
            out,
            tool=TOOL,
            config=job_key,
            overwrite=overwrite,
            adopt=earlier_cache,
            other_config=partial(_other_cache, job_key=job_key, dtype=dtype),
            details={"cache": record},
        ) as claim:
            spec = CacheSpec(
                config_json=json.dumps(config.to_dict(), sort_keys=True),
                output_dir=str(out),
                job_key=job_key,
                dtype=dtype,
                batch_size=batch_size,
                device=str(cfg.get("device", "auto")),
            )
            return _run_cache(cfg, sources, spec, identity, enc_key, claim)
    except FolderError as e:
        raise LatentCacheError(str(e)) from None


def _run_cache(
    cfg: dict[str, Any],
    sources: list[Path],
    spec: CacheSpec,
    identity: dict[str, Any],
    enc_key: str,
    claim: FolderClaim,
) -> dict[str, Any]:
    """:func:`run_cache` inside its claimed and locked ``output_dir``."""
    out, job_key = claim.path, spec.job_key
    names = {f"{s.stem}.{ext}" for s in sources for ext in ("tar", "json")}
    names |= {MANIFEST, "errors.jsonl", EMPTY_PROMPT, MARKER}
    remove_own_temporaries(out, names.__contains__)
    _check_output(out, job_key, bool(cfg.get("overwrite", False)))
    todo = [s for s in sources if finished_stats(out, s, job_key) is None]
    _refuse_strays(out, todo, claim)
    claim.record_outputs(s.stem for s in sources)
    need_empty = _empty_prompt_job(out) != job_key
    ray_cfg = cfg.get("ray") or {}
    if need_empty and not ray_cfg.get("enabled", True):
        write_empty_prompt(spec)
    failed = run_shard_tasks(
        todo,
        total=len(sources),
        desc="cache",
        ray_cfg=ray_cfg,
        name=lambda source: source.name,
        run_here=lambda source: cache_shard(str(source), spec),
        submit=partial(submit_to_ray, spec=spec, ray_cfg=ray_cfg, need_empty=need_empty),
        progress=bool(cfg.get("progress", True)),
        ray_without_shards=need_empty,
    )
    manifest = _write_manifest(out, sources, spec, identity, enc_key, failed)
    if failed:
        raise CacheJobFailed(
            f"{failed_shards_line(failed)} (rerun to resume; see {out / MANIFEST})"
        )
    if not manifest["samples"]:
        raise CacheJobFailed(
            f"no sample cached from {len(sources)} shard(s): {manifest['errors']} bad sample(s), "
            f"see {out / 'errors.jsonl'}"
        )
    return manifest


def _empty_prompt_job(out: Path) -> str | None:
    """Job key recorded in ``empty_prompt.safetensors`` (None when absent or unreadable)."""
    from safetensors import SafetensorError, safe_open

    path = out / EMPTY_PROMPT
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return read_storage_metadata(f.metadata()).get("job_key")
    except (SafetensorError, OSError):
        return None


def _write_manifest(
    out: Path,
    sources: list[Path],
    spec: CacheSpec,
    identity: dict[str, Any],
    enc_key: str,
    failed: list[dict[str, str]],
) -> dict[str, Any]:
    shards, errors, tasks, samples = [], [], {}, 0
    for source in sources:
        st = finished_stats(out, source, spec.job_key)
        if st is None:
            continue
        keep = ("name", "tar", "samples", "sha256", "bytes", "source", "source_sha256")
        shards.append({k: st[k] for k in keep} | {"errors": len(st["errors"])})
        samples += st["samples"]
        errors += st["errors"]
        for t, n in st["tasks"].items():
            tasks[t] = tasks.get(t, 0) + n
    sources_sha = {s["name"]: s["source_sha256"] for s in shards}
    write_jsonl(out / "errors.jsonl", errors)
    config = json.loads(spec.config_json)
    manifest = {
        "format": CACHE_FORMAT,
        "pixel_schema": SCHEMA_VERSION,
        "key": cache_key(enc_key, spec.dtype, sources_sha),
        "encoder_key": enc_key,
        "job_key": spec.job_key,
        "identity": identity,
        "dtype": spec.dtype,
        "geometry": identity["geometry"],
        "samples": samples,
        "tasks": dict(sorted(tasks.items())),
        "errors": len(errors),
        "shards": shards,
        "failed_shards": failed,
        "empty_prompt": EMPTY_PROMPT,
        # Where the model was read from when the cache was made (informative; not in the key).
        "model_path": config["backbone"].get("path"),
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest
