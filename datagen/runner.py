"""``run_job(cfg)``: build all shards of a ``genprop-data`` job, with Ray (or in-process).

1. The driver opens the reader, lists the videos and plans every shard up front
   (:mod:`datagen.plan`); shards already finished with this config are skipped (resume).
2. One task per remaining shard builds its samples (:mod:`datagen.sample_builder`) and writes the
   shard atomically (:mod:`datagen.shards`). Ray retries a task whose worker died or raised.
3. The driver writes ``manifest.json`` (samples, task counts, shards with sha256, errors, config
   hash) and ``errors.jsonl`` (bad videos with reasons), both rebuilt from the per-shard stats so
   they are complete after any number of reruns.

``ray.enabled=false`` runs the same shard function in this process (tiny jobs, debugging).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from datagen.plan import ShardPlan, make_plan
from datagen.record import DatasetError
from datagen.shard_task import JobSpec, build_shard
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
    "hydra",
)
# Test hook: a Ray task creates this marker file and kills its own worker process (SIGKILL) if
# the file does not exist yet, to prove that a dead worker's shard is retried.
KILL_MARKER_ENV = "GENPROP_DATAGEN_TEST_KILL_MARKER"


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
        ValueError: ``output_dir`` holds shards of another config (and ``overwrite`` is false).
        RuntimeError: after writing the manifest, when some shards failed even after retries
            (rerun the same command to resume).
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
    out = Path(plain["output_dir"]).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    chash = config_hash(plain)
    _check_output_dir(out, chash, overwrite=bool(plain.get("overwrite", False)))
    spec = JobSpec.from_config(plain, output_dir=str(out), config_hash=chash)
    video_ids = spec.open_reader().list_videos()
    plans = make_plan(
        video_ids,
        num_samples=int(plain["num_samples"]),
        samples_per_shard=int(plain["samples_per_shard"]),
        mix=plain["mix"],
        tasks=plain.get("tasks"),
        seed=int(plain["seed"]),
    )
    todo = [p for p in plans if read_stats(out, p.name, chash) is None]
    ray_cfg = plain.get("ray") or {}
    show = bool(plain.get("progress", True))
    progress = _Progress(len(plans), len(plans) - len(todo), enabled=show)
    failed: list[dict[str, str]] = []
    if todo and ray_cfg.get("enabled", True):
        failed = _run_ray(todo, spec, sorted(set(video_ids)), ray_cfg, progress)
    else:
        for p in todo:
            progress.update(build_shard(p, spec, sorted(set(video_ids))))
    progress.close()
    manifest = _write_manifest(out, plans, chash, plain, failed)
    if failed:
        raise RuntimeError(
            f"{len(failed)} shard(s) failed after retries (see {out / 'manifest.json'}); "
            "rerun the same command to resume"
        )
    return JobResult(manifest, out / "manifest.json")


def _run_ray(
    todo: list[ShardPlan],
    spec: JobSpec,
    video_ids: list[str],
    ray_cfg: dict[str, Any],
    progress: _Progress,
) -> list[dict[str, str]]:
    import ray

    started_here = False
    if not ray.is_initialized():
        address = ray_cfg.get("address")
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(num_cpus=ray_cfg.get("num_cpus"), include_dashboard=False)
        started_here = True
    try:
        options: dict[str, Any] = {
            "num_cpus": float(ray_cfg.get("cpus_per_task", 1)),
            "max_retries": int(ray_cfg.get("max_retries", 3)),
            "retry_exceptions": True,
        }
        if os.environ.get(KILL_MARKER_ENV):
            options["runtime_env"] = {"env_vars": {KILL_MARKER_ENV: os.environ[KILL_MARKER_ENV]}}
        task = ray.remote(_ray_build_shard).options(**options)
        spec_ref, ids_ref = ray.put(spec), ray.put(video_ids)
        pending = {task.remote(p, spec_ref, ids_ref): p for p in todo}
        failed = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                plan = pending.pop(ref)
                try:
                    progress.update(ray.get(ref))
                except (ray.exceptions.RayError, Exception) as e:
                    failed.append({"shard": plan.name, "reason": f"{type(e).__name__}: {e}"[:2000]})
        return failed
    finally:
        if started_here:
            ray.shutdown()


def _ray_build_shard(plan: ShardPlan, spec: JobSpec, video_ids: list[str]) -> dict[str, Any]:
    marker = os.environ.get(KILL_MARKER_ENV)
    if marker and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return build_shard(plan, spec, video_ids)


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
            raise ValueError(
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
    for p in plans:
        st = read_stats(out, p.name, chash)
        if st is None:
            continue
        shards.append({k: st[k] for k in ("name", "tar", "samples", "sha256", "bytes")})
        samples += st["samples"]
        failed_samples += len(st.get("failed_samples", []))
        skips += len(st.get("skips", []))
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
