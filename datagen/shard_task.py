"""One shard task (run in a Ray worker or in-process): build its samples and write the shard.

Everything a worker needs travels in a :class:`JobSpec` of plain JSON values; the reader and
the recipes are built once per worker process and cached. Each sample is built *and encoded*
inside its own error handling: whatever goes wrong with one sample is recorded in the shard's
stats (``errors``, ``skips``, ``failed_samples``) and the shard goes on.

A task uses as many threads as it holds CPUs (:func:`task_threads`): OpenMP / BLAS through the
worker's environment (:func:`thread_env_vars`, read when those libraries load), OpenCV and torch
through :func:`limit_threads` when the task starts. Several tasks on one machine then share its
cores instead of each spawning a thread per core.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from contracts.schema import encode_sample
from datagen.augment import AugmentConfig, ClipAugment
from datagen.plan import ShardPlan
from datagen.recipes import build_recipes
from datagen.record import Reader
from datagen.sample_builder import BuildConfig, BuildResult, SampleBuilder
from datagen.shards import write_shard

# Thread-count variables of the OpenMP and BLAS runtimes numpy, OpenCV and torch may load.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def task_threads(num_cpus: float) -> int:
    """Threads for a task holding ``num_cpus`` CPUs: ``max(1, int(num_cpus))``."""
    return max(1, int(num_cpus))


def thread_env_vars(threads: int) -> dict[str, str]:
    """Environment of a worker process whose native libraries use ``threads`` threads each."""
    return dict.fromkeys(THREAD_ENV_VARS, str(threads))


def task_runtime_env(runtime_env: dict[str, Any] | None, threads: int) -> dict[str, Any]:
    """``runtime_env`` with the thread variables added to its ``env_vars``.

    Variables that ``runtime_env`` sets itself are kept as they are.
    """
    env = dict(runtime_env or {})
    env["env_vars"] = {**thread_env_vars(threads), **(env.get("env_vars") or {})}
    return env


def limit_threads(threads: int) -> dict[str, Any]:
    """Make OpenCV and torch (when imported) in this process use ``threads`` threads.

    Returns:
        The settings now in effect (see :func:`thread_settings`).
    """
    cv2.setNumThreads(threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return thread_settings()


def shard_task_options(
    ray_cfg: dict[str, Any], runtime_env: dict[str, Any] | None, *, job_level: bool
) -> dict[str, Any]:
    """Ray options of a shard task: its CPUs, retries and runtime_env.

    Args:
        ray_cfg: the job's ``ray`` config (``cpus_per_task``, ``max_retries``).
        runtime_env: the job's ``ray.runtime_env`` (or ``None``).
        job_level: whether ``runtime_env`` was given to ``ray.init`` (a Ray this job started):
            then the task's runtime_env only adds ``env_vars``, which Ray merges with the job's;
            otherwise the whole ``runtime_env`` goes to each task (setup hooks are then ignored).

    Returns:
        ``ray.remote(...).options`` keyword arguments, whose runtime_env sets the thread
        variables of :func:`datagen.shard_task.task_runtime_env` (unless ``runtime_env`` sets
        them itself).
    """
    cpus = float(ray_cfg.get("cpus_per_task", 1))
    env = runtime_env or {}
    if job_level:
        env = {"env_vars": env["env_vars"]} if env.get("env_vars") else {}
    return {
        "num_cpus": cpus,
        "max_retries": int(ray_cfg.get("max_retries", 3)),
        "retry_exceptions": True,
        "runtime_env": task_runtime_env(env, task_threads(cpus)),
    }


@contextlib.contextmanager
def limited_threads(threads: int) -> Iterator[dict[str, Any]]:
    """:func:`limit_threads` inside the block; OpenCV's and torch's counts restored after."""
    before = thread_settings()
    try:
        yield limit_threads(threads)
    finally:
        cv2.setNumThreads(before["cv2"])
        torch = sys.modules.get("torch")
        if torch is not None and before["torch"] is not None:
            torch.set_num_threads(before["torch"])


def thread_settings() -> dict[str, Any]:
    """This process's thread counts: ``cv2``, ``torch`` (``None`` when not imported), ``env``."""
    torch = sys.modules.get("torch")
    return {
        "cv2": cv2.getNumThreads(),
        "torch": torch.get_num_threads() if torch is not None else None,
        "env": {name: os.environ.get(name) for name in THREAD_ENV_VARS},
    }


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
    """Build and write one shard; returns its stats (see :func:`datagen.shards.write_shard`).

    Thread counts are the caller's to set (:func:`limit_threads`).
    """
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
