"""The cache job's tasks on Ray: one per input shard plus the empty prompt's embedding.

Without ``ray.address`` a new local Ray is started (never one already running on the machine)
and each worker exits as soon as the driver process dies (a killed job leaves no worker writing).
Tasks get ``ray.cpus_per_task`` CPUs and ``ray.gpus_per_task`` GPUs (``auto``: one GPU per task
when the cluster has GPUs).
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from pathlib import Path
from typing import Any

from training.cache.runner import Progress, without_env
from training.cache.shard_job import CacheSpec, cache_shard, write_empty_prompt


def _gpus(ray: Any, value: Any) -> float:
    if value in (None, "auto"):
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return float(value)


def run_on_ray(
    todo: list[Path],
    spec: CacheSpec,
    ray_cfg: dict[str, Any],
    need_empty: bool,
    bar: Progress,
) -> list[dict[str, str]]:
    """Run the tasks; returns the shards that failed after retries (``shard``, ``reason``).

    Raises:
        Exception: when the empty prompt's task fails (the cache is unusable without it).
    """
    import ray

    address = ray_cfg.get("address")
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            with without_env("RAY_ADDRESS"):
                ray.init(address="local", num_cpus=ray_cfg.get("num_cpus"), include_dashboard=False)
        started_here = True
    try:
        options: dict[str, Any] = {
            "num_cpus": float(ray_cfg.get("cpus_per_task", 1)),
            "num_gpus": _gpus(ray, ray_cfg.get("gpus_per_task", "auto")),
            "max_retries": int(ray_cfg.get("max_retries", 3)),
            "retry_exceptions": True,
        }
        if ray_cfg.get("runtime_env"):
            options["runtime_env"] = ray_cfg["runtime_env"]
        driver = None if address else os.getpid()
        spec_ref = ray.put(spec)
        empty = None
        if need_empty:
            empty = ray.remote(_empty_task).options(**options).remote(spec_ref, driver)
        task = ray.remote(_shard_task).options(**options)
        pending = {task.remote(str(s), spec_ref, driver): s for s in todo}
        failed = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                source = pending.pop(ref)
                try:
                    bar.update(ray.get(ref))
                except Exception as e:  # the task raised after retries, or its worker died
                    failed.append({"shard": source.name, "reason": _reason(e)})
        if empty is not None:
            ray.get(empty)
        return failed
    finally:
        if started_here:
            ray.shutdown()


def _empty_task(spec: CacheSpec, driver_pid: int | None) -> str:
    _watch_driver(driver_pid)
    return write_empty_prompt(spec)


def _shard_task(source: str, spec: CacheSpec, driver_pid: int | None) -> dict[str, Any]:
    _watch_driver(driver_pid)
    return cache_shard(source, spec)


_WATCHED: set[int] = set()


def _watch_driver(pid: int | None) -> None:
    """Kill this worker (SIGKILL) as soon as the driver process ``pid`` ends.

    Ray keeps a busy worker running after its driver is killed; a watcher thread per worker
    process waits on a pidfd of the driver (polls where pidfds are missing).
    """
    if pid is None or pid in _WATCHED:
        return
    _WATCHED.add(pid)
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    except (AttributeError, OSError):
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _alive(pid):
                time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="genprop-cache-driver-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reason(e: Exception) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"[:2000]
    return f"{type(e).__name__}: {e}"[:2000]
