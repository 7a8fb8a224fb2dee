"""Writing one shard: a WebDataset tar written under a temporary name, renamed when complete.

Files of shard ``NAME`` in the output folder:

- ``NAME.tar`` — the samples (``contracts.schema`` keys); tar headers carry a fixed mtime, mode,
  user and group (uid/gid 0), and videos are encoded bit-exactly, so the same samples give the
  same bytes.
- ``NAME.json`` — per-shard stats, written (atomically) *after* the tar: a shard is finished iff
  its stats file exists and names the job's config hash. A run killed at any point leaves only
  ``*.tmp-*`` files or a tar without stats, both of which a rerun rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import webdataset as wds

from contracts.jobs import write_json_atomic
from contracts.jsonfile import read_json_object
from contracts.schema import Sample, encode_sample


def shard_paths(output_dir: Path, name: str) -> tuple[Path, Path]:
    """``(tar path, stats path)`` of shard ``name``."""
    return output_dir / f"{name}.tar", output_dir / f"{name}.json"


def read_stats(output_dir: Path, name: str, config_hash: str) -> dict[str, Any] | None:
    """The stats of a finished shard of this config, else ``None``."""
    tar, stats = shard_paths(output_dir, name)
    if not (tar.is_file() and stats.is_file()):
        return None
    try:
        data = json.loads(stats.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("config_hash") != config_hash:
        return None
    return data


def stats_config(path: Path) -> str | None:
    """The config hash in ``path`` when it is the stats file of a shard a ``genprop-data`` job
    wrote (``NAME.json`` naming ``NAME.tar`` and a config hash), else ``None``."""
    try:
        data = read_json_object(path, what="shard stats")
    except ValueError:
        return None
    chash = data.get("config_hash")
    if not isinstance(chash, str) or data.get("tar") != f"{path.stem}.tar":
        return None
    return chash


def write_shard(
    output_dir: Path,
    name: str,
    samples: Iterable[Sample | Mapping[str, bytes | str]],
    *,
    config_hash: str,
    codec: str = "h264",
    crf: int = 18,
    preset: str = "medium",
    extra_stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode and write ``samples`` as shard ``name``; return its stats.

    Args:
        output_dir: the job's output folder.
        name: shard name (no extension).
        samples: the samples, in order (consumed lazily: one sample in memory at a time),
            each a :class:`Sample` (encoded here) or a dict already made by
            :func:`contracts.schema.encode_sample` (the shard task encodes inside its per-sample
            error handling).
        config_hash: the job's config hash (stored in the stats: the "finished" marker).
        codec, crf, preset: passed to :func:`contracts.schema.encode_sample`.
        extra_stats: merged into the stats (errors, skips, timings from the caller).

    Returns:
        ``{"name", "tar", "samples", "tasks", "keys", "sha256", "bytes", "config_hash", ...}``.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    tar, stats_path = shard_paths(output_dir, name)
    tmp = tar.with_name(f"{tar.name}.tmp-{os.getpid()}")
    keys: list[str] = []
    tasks: dict[str, int] = {}
    encode_s = 0.0
    try:
        with open(tmp, "wb") as f:
            writer = wds.TarWriter(f, mtime=0.0, user="genprop", group="genprop")
            try:
                for sample in samples:
                    t0 = time.perf_counter()
                    if isinstance(sample, Sample):
                        key, task = sample.key, sample.meta["task"]
                        sample = encode_sample(sample, codec=codec, crf=crf, preset=preset)
                    else:
                        key, task = str(sample["__key__"]), json.loads(sample["json"])["task"]
                    writer.write(dict(sample))
                    encode_s += time.perf_counter() - t0
                    keys.append(key)
                    tasks[task] = tasks.get(task, 0) + 1
            finally:
                writer.close()
            f.flush()
            os.fsync(f.fileno())
        digest = _sha256(tmp)
        os.replace(tmp, tar)
    finally:
        if tmp.exists():
            tmp.unlink()
    stats = {
        "name": name,
        "tar": tar.name,
        "samples": len(keys),
        "tasks": dict(sorted(tasks.items())),
        "keys": keys,
        "sha256": digest,
        "bytes": tar.stat().st_size,
        "config_hash": config_hash,
        "encode_write_s": round(encode_s, 4),
        **(extra_stats or {}),
    }
    write_json_atomic(stats_path, stats)
    return stats


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
