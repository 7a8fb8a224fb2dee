"""One cache task (a Ray worker or in-process): pixel shard -> latent shard + its stats.

The output tar is written under a temporary name, synced and renamed; the stats file
(``NAME.json``, naming the job key and the source shard's size, mtime and sha256) is written,
atomically, after it: a shard is finished iff its stats exist for this job and this source. Samples
are encoded in batches of ``batch_size`` (on the GPU when there is one); a bad sample (undecodable,
wrong geometry, failing encode) is recorded in the stats and the others are written.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import webdataset as wds

from contracts.jobs import write_json_atomic
from contracts.schema import Sample, decode_sample
from genprop.configs import GenPropConfig
from genprop.modeling.latents import EncodedBatch, LatentEncoders, encode_batch
from training.batch import collate_samples, to_model_batch
from training.cache.key import file_sha256
from training.cache.latent_sample import (
    EMPTY_PROMPT,
    encode_members,
    storage_metadata,
    to_storage,
)


@dataclass(frozen=True)
class CacheSpec:
    """A cache job as plain data (travels to Ray workers)."""

    config_json: str  # GenPropConfig.to_dict() as JSON
    output_dir: str
    job_key: str  # encoder key + dtype + cache format: the "finished" marker of each shard
    dtype: str
    batch_size: int
    device: str  # "auto" (GPU when present), "cpu", "cuda", "cuda:1", ...

    def torch_device(self) -> torch.device:
        """The device encodes run on."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@functools.lru_cache(maxsize=2)
def _encoders(config_json: str, device: str) -> LatentEncoders:
    """The job's encoders, built once per worker process."""
    if device.startswith("cuda"):
        # Same input -> same bytes: no autotuned (run-to-run varying) convolution algorithms.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    config = GenPropConfig.from_dict(json.loads(config_json))
    return LatentEncoders(config).to(device).eval()


def stats_path(output_dir: Path, name: str) -> Path:
    """Stats file of output shard ``name``."""
    return output_dir / f"{name}.json"


def source_identity(source: Path) -> dict[str, Any]:
    """What says a source shard is unchanged since its cache shard was made (cheap)."""
    st = source.stat()
    return {"source": str(source), "source_bytes": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def finished_stats(output_dir: Path, source: Path, job_key: str) -> dict[str, Any] | None:
    """Stats of the finished cache shard of ``source`` for this job, else None."""
    name = source.stem
    path = stats_path(output_dir, name)
    if not (path.is_file() and (output_dir / f"{name}.tar").is_file()):
        return None
    try:
        stats = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = isinstance(stats, dict) and stats.get("job_key") == job_key
    ident = source_identity(source)
    return stats if same and all(stats.get(k) == v for k, v in ident.items()) else None


def write_empty_prompt(spec: CacheSpec) -> str:
    """Write ``empty_prompt.safetensors`` (the empty prompt's embedding) atomically."""
    from safetensors.torch import save_file

    enc = _encoders(spec.config_json, str(spec.torch_device()))
    context, mask = enc.encode_prompts([""], 1)
    tensors = to_storage({"context": context[0], "context_mask": mask[0]}, spec.dtype)
    out = Path(spec.output_dir) / EMPTY_PROMPT
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    meta = storage_metadata(dtype=spec.dtype, job_key=spec.job_key)
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # only left when writing failed (e.g. a full disk)
    return str(out)


class _ShardEncoder:
    """Decode, check and encode the samples of one source shard; collect errors."""

    def __init__(self, spec: CacheSpec, source: Path) -> None:
        self.spec, self.source = spec, source
        self.enc = _encoders(spec.config_json, str(spec.torch_device()))
        self.errors: list[dict[str, str]] = []

    def error(self, key: str, reason: str) -> None:
        self.errors.append({"shard": self.source.name, "sample": key, "reason": reason[:2000]})

    def on_read_error(self, exn: Exception) -> bool:
        self.error("?", f"unreadable shard data: {type(exn).__name__}: {exn}")
        return True

    def decoded(self) -> Any:
        cfg = self.enc.config
        want = (cfg.height, cfg.width)
        raw = wds.tarfile_to_samples(handler=self.on_read_error)([{"url": str(self.source)}])
        for d in raw:
            key = str(d.get("__key__", "?"))
            try:
                sample = decode_sample(d)
                frames, size = sample.sce.shape[0], sample.sce.shape[1:3]
                if frames < cfg.num_frames or tuple(size) != want:
                    raise ValueError(
                        f"clip (frames, height, width) = ({frames}, {size[0]}, {size[1]}), the "
                        f"model needs ({cfg.num_frames}, {want[0]}, {want[1]}) (longer clips are "
                        "cut to their first frames)"
                    )
            except Exception as exn:  # one bad sample never stops the shard
                self.error(key, f"{type(exn).__name__}: {exn}")
                continue
            yield sample

    def encode(self, samples: list[Sample]) -> list[tuple[Sample, EncodedBatch]]:
        """Encode a batch; when it fails, each sample alone (recording the failing ones)."""
        try:
            return list(zip(samples, self._split(self._encode(samples)), strict=True))
        except Exception:
            if len(samples) == 1:
                raise
        out = []
        for s in samples:
            try:
                out.append((s, self._encode([s])))
            except Exception as exn:
                self.error(s.key, f"encode failed: {type(exn).__name__}: {exn}")
        return out

    def _encode(self, samples: list[Sample]) -> EncodedBatch:
        batch = collate_samples(samples, num_frames=self.enc.config.num_frames)
        batch = to_model_batch(batch)
        return encode_batch(self.enc, batch, stage="genprop")

    @staticmethod
    def _split(batch: EncodedBatch) -> list[EncodedBatch]:
        return [batch.index(i) for i in range(batch.batch_size)]


def cache_shard(source: str, spec: CacheSpec) -> dict[str, Any]:
    """Encode one pixel shard into ``OUTPUT/NAME.tar`` + ``NAME.json``; returns the stats."""
    t0 = time.perf_counter()
    src = Path(source)
    out_dir = Path(spec.output_dir)
    name = src.stem
    tar = out_dir / f"{name}.tar"
    tmp = tar.with_name(f"{tar.name}.tmp-{os.getpid()}")
    ident = source_identity(src)
    worker = _ShardEncoder(spec, src)
    keys: list[str] = []
    tasks: dict[str, int] = {}
    try:
        with open(tmp, "wb") as f:
            writer = wds.TarWriter(f, mtime=0.0, user="genprop", group="genprop")
            try:
                pending: list[Sample] = []
                for sample in itertools.chain(worker.decoded(), [None]):
                    if sample is not None:
                        pending.append(sample)
                    if pending and (sample is None or len(pending) == spec.batch_size):
                        for s, enc in worker.encode(pending):
                            writer.write(_members(s, enc, src, spec.dtype))
                            keys.append(s.key)
                            tasks[s.meta["task"]] = tasks.get(s.meta["task"], 0) + 1
                        pending = []
            finally:
                writer.close()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, tar)
    finally:
        tmp.unlink(missing_ok=True)
    stats = {
        "name": name,
        "tar": tar.name,
        "job_key": spec.job_key,
        **ident,
        "source_sha256": file_sha256(src),
        "samples": len(keys),
        "keys": keys,
        "tasks": dict(sorted(tasks.items())),
        "errors": worker.errors,
        "sha256": file_sha256(tar),
        "bytes": tar.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 4),
    }
    write_json_atomic(stats_path(out_dir, name), stats)
    return stats


def _members(sample: Sample, enc: EncodedBatch, source: Path, dtype: str) -> dict[str, Any]:
    tensors = {
        "target": enc.target[0],
        "first_latent": enc.first_latent[0],
        "content": enc.content[0],
        "mask": enc.mask[0],
        "context": enc.context[0],
        "context_mask": enc.context_mask[0],
        "image_embeds": None if enc.image_embeds is None else enc.image_embeds[0],
        "gate_keep": None if enc.gate_keep is None else enc.gate_keep[0],
    }
    meta = {
        "task": sample.meta["task"],
        "prompt": str(sample.meta.get("prompt", "")),
        "source": source.name,
        "source_key": sample.key,
    }
    return encode_members(sample.key, to_storage(tensors, dtype), meta, dtype)
