"""``run_job(cfg)``: build all shards of a ``genprop-data`` job, with Ray (or in-process).

1. The driver opens the reader, lists the videos and plans every shard up front
   (:mod:`datagen.plan`); shards already finished with this config are skipped (resume).
2. One task per remaining shard builds its samples (:mod:`datagen.sample_builder`) and writes the
   shard atomically (:mod:`datagen.shards`). Ray retries a task whose worker died or raised.
   A shard that still fails (in-process: raises) is recorded and the others go on.
3. The driver writes ``manifest.json`` (samples, task counts, shards with sha256, errors, failed
   attempts per reason, failed shards, config hash) and ``errors.jsonl`` (bad videos with
   reasons), both rebuilt from the per-shard stats so they are complete after any number of
   reruns.
4. The job fails (:class:`JobFailed`, after the manifest is written) when a shard failed, or
   when fewer than ``min_yield`` × ``num_samples`` samples were built; the message counts the
   reasons.

Each task uses as many threads as it holds CPUs (``ray.cpus_per_task``, at least one): its worker
starts with ``OMP_NUM_THREADS`` & co. set, and OpenCV and torch are limited when the task starts
(:func:`datagen.shard_task.limit_threads`), so tasks running side by side do not oversubscribe the
cores. ``ray.enabled=false`` runs the same shard function in this process (tiny jobs, debugging;
OpenCV and torch limited the same way while it runs). Without
``ray.address`` the job starts its own local Ray (never one already running on the machine), and
every shard worker exits as soon as the driver process dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from datagen.job_config import ConfigError, check_job_config, check_output_dir
from datagen.plan import ShardPlan, make_plan
from datagen.recipes.base import SKIP_KINDS
from datagen.record import DatasetError
from datagen.shard_task import (
    JobSpec,
    build_shard,
    limit_threads,
    limited_threads,
    shard_task_options,
    task_threads,
)
from datagen.shards import read_stats, remove_stale_temporaries, shard_paths

# Keys that change how a job runs, not what it produces: excluded from the config hash.
RUNTIME_KEYS = (
    "ray",
    "progress",
    "output_dir",
    "dry_run",
    "overwrite",
    "check_frames",
    "max_videos",
    "min_yield",
    "hydra",
)
# Wording of the failed-attempt kinds that are errors rather than skips (see SKIP_KINDS).
ERROR_KINDS = {
    "bad_video": "bad video",
    "build_error": "unexpected error while building",
    "encode_error": "encoder failure",
}


class JobFailed(RuntimeError):  # noqa: N818 - reads as what happened to the job
    """Shards failed, or too few samples were built; the manifest is written first."""


@dataclass
class JobResult:
    """What a job produced (also written to ``manifest.json``)."""

    manifest: dict[str, Any]
    path: Path


def config_hash(cfg: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``cfg`` without :data:`RUNTIME_KEYS` (first 16 hex)."""
    content = {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def run_job(cfg: DictConfig | dict[str, Any]) -> JobResult:
    """Build the shards of a job described by the ``genprop_data`` config.

    Returns:
        The manifest and its path.

    Raises:
        DatasetError: a required option is missing or the dataset is unusable.
        ConfigError: an option has a bad value, or ``output_dir`` holds shards of another config
            (and ``overwrite`` is false).
        JobFailed: after writing the manifest, when some shards failed even after retries
            (rerun the same command to resume), or when fewer than ``min_yield`` ×
            ``num_samples`` samples were built.
    """
    if isinstance(cfg, DictConfig):
        try:
            plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as e:
            raise DatasetError(
                f"missing required option {e.full_key} (give it on the command line, e.g. "
                f"{e.full_key}=...)"
            ) from e
    else:
        plain = cfg
    plain = json.loads(json.dumps(plain))  # plain JSON types only: hashable, picklable
    check_job_config(plain)
    out = check_output_dir(plain["output_dir"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"output_dir: cannot create {out} ({e.strerror or e})") from e
    remove_stale_temporaries(out)
    chash = config_hash(plain)
    _check_output_dir(out, chash, overwrite=bool(plain.get("overwrite", False)))
    spec = JobSpec.from_config(plain, output_dir=str(out), config_hash=chash)
    video_ids = spec.open_reader().list_videos()
    try:
        plans = make_plan(
            video_ids,
            num_samples=int(plain["num_samples"]),
            samples_per_shard=int(plain["samples_per_shard"]),
            mix=plain["mix"],
            tasks=plain.get("tasks"),
            seed=int(plain["seed"]),
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"mix/tasks: {e}") from e
    todo = [p for p in plans if read_stats(out, p.name, chash) is None]
    ray_cfg = plain.get("ray") or {}
    show = bool(plain.get("progress", True))
    progress = _Progress(len(plans), len(plans) - len(todo), enabled=show)
    failed: list[dict[str, str]] = []
    if todo and ray_cfg.get("enabled", True):
        failed = _run_ray(todo, spec, sorted(set(video_ids)), ray_cfg, progress)
    else:
        with limited_threads(task_threads(float(ray_cfg.get("cpus_per_task", 1)))):
            for p in todo:
                try:
                    progress.update(build_shard(p, spec, sorted(set(video_ids))))
                except Exception as e:  # one broken shard must not stop the others
                    reason = f"{type(e).__name__}: {e}"[:2000]
                    failed.append({"shard": p.name, "reason": reason})
    progress.close()
    manifest = _write_manifest(out, plans, chash, plain, failed)
    problem = job_problem(manifest, min_yield=float(plain.get("min_yield", 0.5)))
    if problem:
        raise JobFailed(f"{problem} (see {out / 'manifest.json'} and errors.jsonl)")
    return JobResult(manifest, out / "manifest.json")


def job_problem(manifest: dict[str, Any], *, min_yield: float) -> str | None:
    """One line saying why a finished job counts as failed, or ``None`` when it succeeded.

    A job fails when a shard failed after its retries, or when it built fewer than
    ``min_yield`` × ``planned_samples`` samples (``min_yield=0`` accepts any yield). The line
    counts the failed sample attempts per reason.
    """
    planned, built = manifest["planned_samples"], manifest["samples"]
    parts = []
    if manifest["failed_shards"]:
        first = manifest["failed_shards"][0]
        reason = first["reason"].splitlines()[0] if first["reason"] else "?"
        n = len(manifest["failed_shards"])
        parts.append(f"{n} shard(s) failed after retries, first {first['shard']}: {reason}")
    if built < min_yield * planned:
        parts.append(
            f"built {built} of {planned} samples (min_yield={min_yield:g}); "
            f"failed attempts by reason: {_describe_reasons(manifest['attempt_failures'])}"
        )
    elif parts and manifest["attempt_failures"]:
        reasons = _describe_reasons(manifest["attempt_failures"])
        parts.append(f"failed attempts by reason: {reasons}")
    return "; ".join(parts) or None


def _describe_reasons(counts: dict[str, int]) -> str:
    labels = {**SKIP_KINDS, **ERROR_KINDS}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{labels.get(k, k)} {n}" for k, n in ranked) or "none recorded"


def _run_ray(
    todo: list[ShardPlan],
    spec: JobSpec,
    video_ids: list[str],
    ray_cfg: dict[str, Any],
    progress: _Progress,
) -> list[dict[str, str]]:
    import ray

    address, runtime_env = ray_cfg.get("address"), ray_cfg.get("runtime_env") or None
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=True, runtime_env=runtime_env)
        else:
            # "local" starts a new Ray even when one runs on this machine or RAY_ADDRESS is set.
            with _without_env("RAY_ADDRESS"):
                ray.init(
                    address="local",
                    num_cpus=ray_cfg.get("num_cpus"),
                    include_dashboard=False,
                    runtime_env=runtime_env,
                )
        started_here = True
    try:
        options = shard_task_options(ray_cfg, runtime_env, job_level=started_here)
        task = ray.remote(_ray_build_shard).options(**options)
        spec_ref, ids_ref = ray.put(spec), ray.put(video_ids)
        driver = None if address else os.getpid()  # a cluster's workers run on other machines
        threads = task_threads(options["num_cpus"])
        pending = {task.remote(p, spec_ref, ids_ref, driver, threads): p for p in todo}
        failed = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                plan = pending.pop(ref)
                try:
                    progress.update(ray.get(ref))
                except Exception as e:  # RayTaskError (the task raised), worker died, ...
                    failed.append({"shard": plan.name, "reason": _ray_reason(e)})
        return failed
    finally:
        if started_here:
            ray.shutdown()


def _ray_build_shard(
    plan: ShardPlan, spec: JobSpec, video_ids: list[str], driver_pid: int | None, threads: int
) -> dict[str, Any]:
    """The Ray task: limit this worker to ``threads`` threads, build the shard.

    The returned stats also carry the worker's ``threads`` settings (not written to the shard's
    stats file).
    """
    if driver_pid is not None:
        _exit_with_driver(driver_pid)
    settings = limit_threads(threads)
    return {**build_shard(plan, spec, video_ids), "threads": settings}


def _ray_reason(e: Exception) -> str:
    """The cause of a failed Ray task, first line first (not Ray's wrapped traceback)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"[:2000]
    return f"{type(e).__name__}: {e}"[:2000]


_WATCHED: set[int] = set()


def _exit_with_driver(pid: int) -> None:
    """Kill this worker process (SIGKILL) as soon as process ``pid`` (the driver) ends.

    Ray keeps a busy worker running after its driver is killed; a watcher thread per worker
    process waits on a pidfd of the driver (polls on systems without pidfds).
    """
    if pid in _WATCHED:
        return
    _WATCHED.add(pid)
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
    except (AttributeError, OSError):  # no pidfds: poll
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _alive(pid):
                time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="genprop-driver-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _without_env(name: str):
    """Remove environment variable ``name`` inside the block, restore it after."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


def _check_output_dir(out: Path, chash: str, *, overwrite: bool) -> None:
    """Refuse to mix shards of two configs in one folder (or clear them with ``overwrite``)."""
    for stats in sorted(out.glob("shard-*.json")):
        try:
            other = json.loads(stats.read_text()).get("config_hash")
        except (OSError, json.JSONDecodeError, AttributeError):
            other = None
        if other == chash:
            continue
        if not overwrite:
            raise ConfigError(
                f"{out} holds shards of another config ({stats.name}: config_hash {other!r}, "
                f"this job: {chash!r}); use a new output_dir or pass overwrite=true"
            )
        stats.unlink()
        shard_paths(out, stats.stem)[0].unlink(missing_ok=True)


def _write_manifest(
    out: Path,
    plans: list[ShardPlan],
    chash: str,
    cfg: dict[str, Any],
    failed: list[dict[str, str]],
) -> dict[str, Any]:
    from datagen.schema import SCHEMA_VERSION
    from datagen.shards import write_json_atomic

    shards, tasks, errors, skips = [], {}, {}, 0
    samples = failed_samples = 0
    reasons: Counter[str] = Counter()
    for p in plans:
        st = read_stats(out, p.name, chash)
        if st is None:
            continue
        shards.append({k: st[k] for k in ("name", "tar", "samples", "sha256", "bytes")})
        samples += st["samples"]
        failed_samples += len(st.get("failed_samples", []))
        skips += len(st.get("skips", []))
        reasons.update(e.get("kind", "recipe") for e in st.get("skips", []))
        reasons.update(e.get("kind", "bad_video") for e in st.get("errors", []))
        for t, n in st["tasks"].items():
            tasks[t] = tasks.get(t, 0) + n
        for e in st.get("errors", []):
            errors.setdefault((e["video"], e["reason"]), e)
    lines = [json.dumps(e, sort_keys=True) for _, e in sorted(errors.items())]
    (out / "errors.jsonl").write_text("".join(f"{line}\n" for line in lines))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "config_hash": chash,
        "samples": samples,
        "planned_samples": sum(len(p.samples) for p in plans),
        "tasks": dict(sorted(tasks.items())),
        "shards": shards,
        "errors": len({v for v, _ in errors}),
        "skipped_attempts": skips,
        "failed_samples": failed_samples,
        "attempt_failures": dict(sorted(reasons.items())),
        "failed_shards": failed,
        "config": cfg,
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


class _Progress:
    """tqdm bar over shards, with samples and samples/s in the postfix."""

    def __init__(self, total: int, done: int, *, enabled: bool) -> None:
        from tqdm import tqdm

        self.samples, self.t0 = 0, time.perf_counter()
        self.bar = tqdm(total=total, initial=done, unit="shard", disable=not enabled, desc="shards")

    def update(self, stats: dict[str, Any]) -> None:
        self.samples += int(stats["samples"])
        rate = self.samples / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(samples=self.samples, samples_per_s=f"{rate:.2f}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
