"""``run_job(cfg)``: build all shards of a ``genprop-data`` job, with Ray (or in-process).

0. The driver claims ``output_dir`` (:mod:`contracts.ownership`) before any work: a new or empty
   folder, or one whose owner marker names ``genprop-data`` and this config hash (else refused
   unless ``overwrite``), and holds its lock for the whole job, Ray workers included.
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

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from contracts.jobs import (
    RaySession,
    clear_other_jobs,
    failed_shards_line,
    gather_ray_tasks,
    run_shard_tasks,
    watch_driver,
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
from datagen.job_config import ConfigError, check_job_config, check_output_dir
from datagen.plan import ShardPlan, make_plan
from datagen.recipes import partner_tasks
from datagen.record import SKIP_KINDS, DatasetError
from datagen.shard_task import (
    JobSpec,
    build_shard,
    limit_threads,
    limited_threads,
    shard_task_options,
    task_threads,
)
from datagen.shards import read_stats, stats_config

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
TOOL = "genprop-data"
# The files a job writes in output_dir (their stale ``NAME.tmp-PID`` temporaries are removed).
_JOB_FILE = re.compile(r"shard-\d{6}\.(tar|json)|manifest\.json|errors\.jsonl")
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
    chash = config_hash(plain)
    overwrite = bool(plain.get("overwrite", False))
    try:
        with owned_folder(
            out,
            tool=TOOL,
            config=chash,
            overwrite=overwrite,
            adopt=earlier_output,
            other_config=partial(_other_config, chash=chash),
        ) as claim:
            return _run_job(plain, out, chash, claim)
    except FolderError as e:
        raise ConfigError(str(e)) from None


def _run_job(plain: dict[str, Any], out: Path, chash: str, claim: FolderClaim) -> JobResult:
    """:func:`run_job` inside its claimed and locked ``output_dir``."""
    remove_own_temporaries(out, _is_job_file)
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
            partner_tasks=partner_tasks(plain["recipes"]),
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"mix/tasks: {e}") from e
    todo = [p for p in plans if read_stats(out, p.name, chash) is None]
    _refuse_strays(out, todo, claim)
    claim.record_outputs(p.name for p in plans)
    ray_cfg = plain.get("ray") or {}
    ids = sorted(set(video_ids))
    here_threads = task_threads(float(ray_cfg.get("cpus_per_task", 1)))

    def build_here(plan: ShardPlan) -> dict[str, Any]:
        with limited_threads(here_threads):
            return build_shard(plan, spec, ids)

    failed = run_shard_tasks(
        todo,
        total=len(plans),
        desc="shards",
        ray_cfg=ray_cfg,
        name=lambda p: p.name,
        run_here=build_here,
        submit=partial(_submit_to_ray, spec=spec, video_ids=ids, ray_cfg=ray_cfg),
        runtime_env=ray_cfg.get("runtime_env") or None,
        progress=bool(plain.get("progress", True)),
    )
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
        parts.append(failed_shards_line(manifest["failed_shards"]))
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


def _submit_to_ray(
    session: RaySession,
    todo: Sequence[ShardPlan],
    on_done: Callable[[Any], None],
    *,
    spec: JobSpec,
    video_ids: list[str],
    ray_cfg: dict[str, Any],
) -> list[dict[str, str]]:
    """The job's Ray tasks, one per shard (:data:`contracts.jobs.RaySubmit`)."""
    import ray

    runtime_env = ray_cfg.get("runtime_env") or None
    options = shard_task_options(ray_cfg, runtime_env, job_level=session.started_here)
    task = ray.remote(_ray_build_shard).options(**options)
    spec_ref, ids_ref = ray.put(spec), ray.put(video_ids)
    driver, threads = session.driver_pid, task_threads(options["num_cpus"])
    pending = {task.remote(p, spec_ref, ids_ref, driver, threads): p.name for p in todo}
    return gather_ray_tasks(pending, on_done=on_done)


def _ray_build_shard(
    plan: ShardPlan, spec: JobSpec, video_ids: list[str], driver_pid: int | None, threads: int
) -> dict[str, Any]:
    """The Ray task: limit this worker to ``threads`` threads, build the shard.

    The returned stats also carry the worker's ``threads`` settings (not written to the shard's
    stats file).
    """
    watch_driver(driver_pid)
    settings = limit_threads(threads)
    return {**build_shard(plan, spec, video_ids), "threads": settings}


def _check_output_dir(out: Path, chash: str, *, overwrite: bool) -> None:
    """Refuse to mix shards of two configs in one folder (or clear them with ``overwrite``).

    Only shards whose stats a ``genprop-data`` job wrote count (and are cleared); other files
    are not this job's and are left alone.
    """

    def refusal(stats: Path, other: Any) -> ConfigError:
        return ConfigError(
            f"{out} holds shards of another config ({stats.name}: config_hash {other!r}, "
            f"this job: {chash!r}); use a new output_dir or pass overwrite=true"
        )

    clear_other_jobs(
        [p for p in sorted(out.glob("shard-*.json")) if stats_config(p) is not None],
        key_field="config_hash",
        key=chash,
        overwrite=overwrite,
        refusal=refusal,
    )


def _other_config(out: Path, marker: dict[str, Any], *, chash: str) -> str:
    return (
        f"output_dir: {out} holds shards of another config ({MARKER}: config_hash "
        f"{marker.get('config_hash')!r}, this job: {chash!r}); use a new output_dir or pass "
        "overwrite=true"
    )


def _refuse_strays(out: Path, todo: Sequence[ShardPlan], claim: FolderClaim) -> None:
    """Refuse to replace a shard tar this tool did not record (unless ``overwrite``).

    In a folder of ours, a tar without finished stats is one a killed run of this job left (its
    name is in the marker's outputs) and is rebuilt; any other is someone else's file.
    """
    if claim.fresh or claim.taken_over or not claim.previous or claim.previous.get("adopted"):
        return
    known = claim.known_outputs()
    strays = [p.name for p in todo if p.name not in known and (out / f"{p.name}.tar").exists()]
    if strays:
        raise ConfigError(
            f"output_dir: {out / strays[0]}.tar was not written by this job (not in {MARKER}); "
            "move it away or pass overwrite=true to replace it"
        )


def earlier_output(out: Path) -> str | None:
    """The config hash of a ``genprop-data`` folder written before owner markers existed (from
    its ``manifest.json``, else from its shard stats), or ``None`` when it is not one."""
    try:
        manifest = read_json_object(out / "manifest.json", what="manifest")
    except ValueError:
        manifest = {}
    chash = manifest.get("config_hash")
    if isinstance(chash, str) and "schema_version" in manifest and "shards" in manifest:
        return chash
    for stats in sorted(out.glob("shard-*.json")):
        found = stats_config(stats)
        if found is not None:
            return found
    return None


def _is_job_file(name: str) -> bool:
    """Whether ``name`` is a file a ``genprop-data`` job writes (for its stale temporaries)."""
    return bool(_JOB_FILE.fullmatch(name)) or name == MARKER


def _write_manifest(
    out: Path,
    plans: list[ShardPlan],
    chash: str,
    cfg: dict[str, Any],
    failed: list[dict[str, str]],
) -> dict[str, Any]:
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
    write_jsonl(out / "errors.jsonl", (e for _, e in sorted(errors.items())))
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
