"""One shard task (run in a Ray worker or in-process): build its samples and write the shard.

Everything a worker needs travels in a :class:`JobSpec` of plain JSON values; the reader and
the recipes are built once per worker process and cached. Each sample is built *and encoded*
inside its own error handling: whatever goes wrong with one sample is recorded in the shard's
stats (``errors``, ``skips``, ``failed_samples``) and the shard goes on.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from datagen.augment import AugmentConfig, ClipAugment
from datagen.plan import ShardPlan
from datagen.recipes import build_recipes
from datagen.record import Reader
from datagen.sample_builder import BuildConfig, BuildResult, SampleBuilder
from datagen.schema import encode_sample
from datagen.shards import write_shard


@dataclass(frozen=True)
class JobSpec:
    """The job as plain data: the resolved config, output folder and config hash."""

    cfg_json: str
    output_dir: str
    config_hash: str

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, output_dir: str, config_hash: str) -> JobSpec:
        return cls(json.dumps(cfg, sort_keys=True), output_dir, config_hash)

    @property
    def cfg(self) -> dict[str, Any]:
        return json.loads(self.cfg_json)

    def open_reader(self) -> Reader:
        """The job's reader (cached per process)."""
        return _reader(json.dumps(self.cfg["source"], sort_keys=True))


def reader_args(source_cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(source name, options)`` from the ``source`` config group (``name`` + options)."""
    opts = {k: v for k, v in source_cfg.items() if not k.startswith("_")}
    name = opts.pop("name", None)
    if not name:
        raise ValueError(f"config group 'source' needs a 'name' key, got keys {sorted(source_cfg)}")
    return str(name), opts


@functools.lru_cache(maxsize=4)
def _reader(source_json: str) -> Reader:
    from datagen.readers import open_reader

    name, options = reader_args(json.loads(source_json))
    return open_reader(name, **options)


def build_config(cfg: dict[str, Any]) -> BuildConfig:
    """:class:`BuildConfig` from the job config (``clip``, ``filters``, ``seed``, ``prompt``)."""
    clip, filters = cfg["clip"], cfg.get("filters") or {}
    size = clip["size"]
    size = (int(size), int(size)) if isinstance(size, int | float) else (int(size[0]), int(size[1]))
    stride = clip.get("stride", 1)
    strides = tuple(int(s) for s in (stride if isinstance(stride, list) else [stride]))
    return BuildConfig(
        frames=int(clip["frames"]),
        size=size,
        strides=strides,
        crop=str(clip.get("crop", "random")),
        min_area=float(filters.get("min_area", 0.0)),
        max_area=float(filters.get("max_area", 1.0)),
        max_attempts=int(filters.get("max_attempts", 8)),
        seed=int(cfg["seed"]),
        prompt_template=str(cfg.get("prompt_template", "a video of {}")),
    )


@functools.lru_cache(maxsize=4)
def _builder(cfg_json: str, video_ids: tuple[str, ...]) -> SampleBuilder:
    cfg = json.loads(cfg_json)
    return SampleBuilder(
        load=_reader(json.dumps(cfg["source"], sort_keys=True)).load,
        video_ids=video_ids,
        recipes=build_recipes(cfg.get("recipes") or {}),
        augment=ClipAugment(AugmentConfig(**(cfg.get("augment") or {}))),
        cfg=build_config(cfg),
    )


def build_shard(plan: ShardPlan, spec: JobSpec, video_ids: list[str]) -> dict[str, Any]:
    """Build and write one shard; returns its stats (see :func:`datagen.shards.write_shard`)."""
    cv2.setNumThreads(1)  # one task per core: no nested threading
    builder = _builder(spec.cfg_json, tuple(video_ids))
    enc = spec.cfg.get("encode") or {}
    codec, crf = str(enc.get("codec", "h264")), int(enc.get("crf", 18))
    preset = str(enc.get("preset", "medium"))
    errors: list[dict[str, str]] = []
    skips: list[dict[str, str]] = []
    failed: list[str] = []
    t0 = time.perf_counter()

    def encode(sample):
        return encode_sample(sample, codec=codec, crf=crf, preset=preset)

    def samples() -> Iterator[dict[str, bytes | str]]:
        for p in plan.samples:
            try:
                result = builder.build(p, encode)
            except Exception as e:  # a bug outside the per-attempt handling: lose one sample
                reason = f"{type(e).__name__}: {e}"
                entry = {"video": p.video_id, "reason": reason, "sample": p.key}
                result = BuildResult(None, errors=[{**entry, "kind": "build_error"}])
            errors.extend(result.errors)
            skips.extend(result.skips)
            if result.encoded is None:
                failed.append(p.key)
            else:
                yield result.encoded

    stats = write_shard(
        Path(spec.output_dir),
        plan.name,
        samples(),
        config_hash=spec.config_hash,
        codec=codec,
        crf=crf,
        preset=preset,
        extra_stats={"errors": errors, "skips": skips, "failed_samples": failed},
    )
    stats["total_s"] = round(time.perf_counter() - t0, 4)
    return stats
