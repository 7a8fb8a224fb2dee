"""The cache job's tasks on Ray: one per input shard plus the empty prompt's embedding.

Ray is joined or started by :func:`contracts.jobs.run_shard_tasks` (without ``ray.address``, a new
local Ray, never one already running on the machine) and each worker exits as soon as the driver
process dies (a killed job leaves no worker writing). Tasks get ``ray.cpus_per_task`` CPUs and
``ray.gpus_per_task`` GPUs (``auto``: one GPU per task when the cluster has GPUs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from contracts.jobs import RaySession, gather_ray_tasks, watch_driver
from training.cache.shard_job import CacheSpec, cache_shard, write_empty_prompt


def _gpus(ray: Any, value: Any) -> float:
    if value in (None, "auto"):
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return float(value)


def submit_to_ray(
    session: RaySession,
    todo: Sequence[Path],
    on_done: Callable[[Any], None],
    *,
    spec: CacheSpec,
    ray_cfg: dict[str, Any],
    need_empty: bool,
) -> list[dict[str, str]]:
    """The cache's Ray tasks (:data:`contracts.jobs.RaySubmit`); returns the shards that failed
    after retries (``shard``, ``reason``).

    Raises:
        Exception: when the empty prompt's task fails (the cache is unusable without it).
    """
    import ray

    options: dict[str, Any] = {
        "num_cpus": float(ray_cfg.get("cpus_per_task", 1)),
        "num_gpus": _gpus(ray, ray_cfg.get("gpus_per_task", "auto")),
        "max_retries": int(ray_cfg.get("max_retries", 3)),
        "retry_exceptions": True,
    }
    if ray_cfg.get("runtime_env"):
        options["runtime_env"] = ray_cfg["runtime_env"]
    driver = session.driver_pid
    spec_ref = ray.put(spec)
    empty = None
    if need_empty:
        empty = ray.remote(_empty_task).options(**options).remote(spec_ref, driver)
    task = ray.remote(_shard_task).options(**options)
    pending = {task.remote(str(s), spec_ref, driver): s.name for s in todo}
    failed = gather_ray_tasks(pending, on_done=on_done)
    if empty is not None:
        ray.get(empty)
    return failed


def _empty_task(spec: CacheSpec, driver_pid: int | None) -> str:
    watch_driver(driver_pid)
    return write_empty_prompt(spec)


def _shard_task(source: str, spec: CacheSpec, driver_pid: int | None) -> dict[str, Any]:
    watch_driver(driver_pid)
    return cache_shard(source, spec)
