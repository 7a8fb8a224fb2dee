"""The shard-job engine shared by ``genprop-data`` (:mod:`datagen.runner`) and ``genprop-cache``
(:mod:`training.cache.runner`): one task per output shard, on Ray or in this process, through one
driver, :func:`run_shard_tasks`.

A job built on it:

1. claims its folder (:func:`contracts.ownership.owned_folder`: the owner marker, the lock, and
   the temporaries of its own killed runs removed) and refuses (or, with ``overwrite``, clears)
   shards another job of the same tool wrote there (:func:`clear_other_jobs`);
2. skips the shards already finished (resume) and hands the remaining ones to
   :func:`run_shard_tasks`, which runs one task per shard inside :func:`ray_session` (the job
   submits them; :func:`gather_ray_tasks` collects them; Ray retries a task whose worker died or
   raised) or, with ``ray.enabled=false``, :func:`run_in_process`; a shard that still fails is
   recorded as ``{"shard", "reason"}`` and the others go on;
3. writes its manifest (:func:`write_json_atomic`, :func:`write_jsonl`) and fails, after that,
   when a shard failed (:func:`failed_shards_line`).

Without ``ray.address`` :func:`ray_session` starts a new local Ray (never one already running on
the machine); tasks call :func:`watch_driver` so a worker exits as soon as the driver dies.

This module imports only the standard library (Ray and tqdm when used).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from contracts.interrupts import keep_sigterm_handler

Item = TypeVar("Item")
# A shard that failed after its retries: {"shard": name, "reason": first line of the cause}.
ShardFailure = dict[str, str]
# Longest reason kept per failed shard (a traceback can be huge).
MAX_REASON_CHARS = 2000


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (no temporary is left behind
    when writing fails, e.g. on a full disk)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """One JSON object (sorted keys) per line."""
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def clear_other_jobs(
    stats_files: Iterable[Path],
    *,
    key_field: str,
    key: str,
    overwrite: bool,
    refusal: Callable[[Path, Any], Exception],
) -> None:
    """Refuse to mix shards of two jobs in one folder (or delete the others with ``overwrite``).

    Args:
        stats_files: the folder's shard stats files (``NAME.json`` next to ``NAME.tar``).
        key_field: the stats field naming the job that wrote the shard.
        key: this job's value of ``key_field``.
        overwrite: delete the other jobs' shards (tar and stats) instead of refusing.
        refusal: builds the error raised for the first stats file of another job, from its path
            and its ``key_field`` (``None`` when unreadable).
    """
    for path in stats_files:
        try:
            other = json.loads(path.read_text()).get(key_field)
        except (OSError, json.JSONDecodeError, AttributeError):
            other = None
        if other == key:
            continue
        if not overwrite:
            raise refusal(path, other)
        path.unlink()
        path.with_suffix(".tar").unlink(missing_ok=True)


class Progress:
    """tqdm bar over shards, with samples and samples/s in the postfix."""

    def __init__(self, total: int, done: int, *, enabled: bool, desc: str) -> None:
        from tqdm import tqdm

        self.samples, self.t0 = 0, time.perf_counter()
        self.bar = tqdm(total=total, initial=done, unit="shard", disable=not enabled, desc=desc)

    def update(self, stats: dict[str, Any]) -> None:
        """Count one finished shard and its ``stats["samples"]``."""
        self.samples += int(stats["samples"])
        rate = self.samples / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(samples=self.samples, samples_per_s=f"{rate:.2f}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def failure_reason(e: BaseException) -> str:
    """``Type: message`` of a failed task's cause (a Ray task error's own cause, not Ray's
    wrapped traceback), at most :data:`MAX_REASON_CHARS` characters."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    return f"{type(e).__name__}: {e}"[:MAX_REASON_CHARS]


def failed_shards_line(failed: Sequence[ShardFailure]) -> str:
    """``N shard(s) failed after retries, first NAME: first line of its reason``."""
    first = failed[0]
    reason = first["reason"].splitlines()[0] if first["reason"] else "?"
    return f"{len(failed)} shard(s) failed after retries, first {first['shard']}: {reason}"


def run_in_process(
    todo: Iterable[Item],
    task: Callable[[Item], dict[str, Any]],
    *,
    name: Callable[[Item], str],
    on_done: Callable[[dict[str, Any]], None],
) -> list[ShardFailure]:
    """Run ``task`` on each item here, in order; a raising item is recorded and the others go on.

    Returns:
        The failed shards (``shard``: ``name(item)``, ``reason``).
    """
    failed = []
    for item in todo:
        try:
            stats = task(item)
        except Exception as e:  # one broken shard must not stop the others
            failed.append({"shard": name(item), "reason": failure_reason(e)})
        else:
            on_done(stats)
    return failed


# Submits the job's Ray tasks for the given shards and collects them (with
# :func:`gather_ray_tasks`, calling ``on_done`` with each finished shard's stats); returns the
# shards that failed.
RaySubmit = Callable[["RaySession", Sequence[Item], Callable[[Any], None]], list[ShardFailure]]


def run_shard_tasks(
    todo: Sequence[Item],
    *,
    total: int,
    desc: str,
    ray_cfg: Mapping[str, Any],
    name: Callable[[Item], str],
    run_here: Callable[[Item], dict[str, Any]],
    submit: RaySubmit,
    runtime_env: dict[str, Any] | None = None,
    progress: bool = True,
    ray_without_shards: bool = False,
) -> list[ShardFailure]:
    """Run one task per shard of ``todo`` with a progress bar: on Ray unless ``ray.enabled`` is
    false (then here, in order).

    Args:
        todo: the shards still to build (finished ones already skipped).
        total: all shards of the job (the bar starts at ``total - len(todo)``).
        desc: the progress bar's label.
        ray_cfg: the job's ``ray`` options (``enabled``, ``address``, ``num_cpus``, ...).
        name: a shard's name, for failures.
        run_here: builds one shard in this process and returns its stats.
        submit: the job's Ray tasks (see :data:`RaySubmit`).
        runtime_env: ``ray.init``'s runtime environment when this job starts Ray.
        progress: show the bar.
        ray_without_shards: start Ray even when ``todo`` is empty (the job has other Ray work).

    Returns:
        The shards that failed after their retries (``shard``, ``reason``).
    """
    bar = Progress(total, total - len(todo), enabled=progress, desc=desc)
    try:
        if (todo or ray_without_shards) and ray_cfg.get("enabled", True):
            with ray_session(ray_cfg, runtime_env=runtime_env) as session:
                return submit(session, todo, bar.update)
        return run_in_process(todo, run_here, name=name, on_done=bar.update)
    finally:
        bar.close()


@dataclass(frozen=True)
class RaySession:
    """The Ray a job runs on."""

    started_here: bool  # this job called ray.init (and gave it the runtime_env)
    driver_pid: int | None  # for :func:`watch_driver`; None on a cluster (workers elsewhere)


@contextlib.contextmanager
def ray_session(
    ray_cfg: Mapping[str, Any], *, runtime_env: dict[str, Any] | None = None
) -> Iterator[RaySession]:
    """Join ``ray_cfg["address"]``, or start a new local Ray (``ray_cfg["num_cpus"]`` CPUs), unless
    Ray is already initialized in this process; shut it down after the block if started here.

    ``runtime_env`` goes to ``ray.init`` (then it is the job's). ``RAY_ADDRESS`` is ignored
    for a local Ray.
    """
    import ray

    address = ray_cfg.get("address")
    started_here = False
    if not ray.is_initialized():
        if address:
            with keep_sigterm_handler():
                ray.init(address=address, log_to_driver=True, runtime_env=runtime_env)
        else:
            # "local" starts a new Ray even when one runs on this machine or RAY_ADDRESS is set.
            with without_env("RAY_ADDRESS"), keep_sigterm_handler():
                ray.init(
                    address="local",
                    num_cpus=ray_cfg.get("num_cpus"),
                    include_dashboard=False,
                    runtime_env=runtime_env,
                )
        started_here = True
    try:
        yield RaySession(started_here, None if address else os.getpid())
    finally:
        if started_here:
            ray.shutdown()


def gather_ray_tasks(
    pending: Mapping[Any, str], *, on_done: Callable[[Any], None]
) -> list[ShardFailure]:
    """Wait for Ray tasks (object ref -> shard name) as they finish; ``on_done(result)`` each.

    Returns:
        The shards whose task raised after its retries or whose worker died.
    """
    import ray

    left, failed = dict(pending), []
    while left:
        done, _ = ray.wait(list(left), num_returns=1)
        for ref in done:
            shard = left.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as e:  # RayTaskError (the task raised), worker died, ...
                failed.append({"shard": shard, "reason": failure_reason(e)})
            else:
                on_done(result)
    return failed


_WATCHED: set[int] = set()


def watch_driver(pid: int | None) -> None:
    """Kill this worker process (SIGKILL) as soon as the driver process ``pid`` ends.

    Ray keeps a busy worker running after its driver is killed; a watcher thread per worker
    process waits on a pidfd of the driver (polls where pidfds are missing). ``None``: no watch.
    """
    if pid is None or pid in _WATCHED:
        return
    _WATCHED.add(pid)
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    except (AttributeError, OSError):  # no pidfds: poll
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while pid_alive(pid):
                time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="genprop-driver-watch", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def without_env(name: str) -> Iterator[None]:
    """Remove environment variable ``name`` inside the block, restore it after."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved
