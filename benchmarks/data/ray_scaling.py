"""Ray part of :mod:`benchmarks.data`: one job at 1 and 2 tasks at a time, and the machine's cap.

On a shared machine two Ray workers cannot be faster than two plain CPU-bound processes; the
cap (:func:`parallel_ceiling`) is measured before and after the Ray runs so that the speedup can
be read against it (target: speedup / ceiling >= :data:`CEILING_SHARE_TARGET`). On a running
multi-node cluster (:func:`bench_ray_cluster`) the same job runs on all its nodes and on one
node (the others' CPUs held by idle placeholder actors).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.data.jobs import job, summarise, timed_job

# Ray's speedup should reach this share of the machine's own 2-vs-1 process speedup.
CEILING_SHARE_TARGET = 0.9


def ray_worker_peak_rss_mb() -> list[float]:
    """VmHWM (peak RSS) of the Ray worker processes under this process (Linux /proc only)."""
    parent: dict[int, int] = {}
    for p in Path("/proc").glob("[0-9]*"):
        try:
            parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    mine, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, pp in parent.items() if pp in mine} - mine
        mine |= new
        grew = bool(new)
    peaks = []
    for pid in mine - {os.getpid()}:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if b"ray::" not in cmd and b"default_worker" not in cmd:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(round(int(line.split()[1]) / 1024, 1))
    return sorted(peaks, reverse=True)


SPIN_CODE = "x = 0\nfor i in range({n}):\n    x += i * i"


def parallel_ceiling(n: int = 6_000_000) -> dict[str, Any]:
    """The best 2-vs-1 speedup this machine offers right now: a pure CPU loop in 1 vs 2 processes.

    Other users of the machine (and its load) cap what two Ray workers can reach; this measures
    the cap in the same minutes, so the Ray speedup can be read against it.
    """

    def spin(copies: int) -> float:
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen([sys.executable, "-c", SPIN_CODE.format(n=n)]) for _ in range(copies)
        ]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - t0

    one, two = spin(1), spin(2)
    return {
        "one_process_s": round(one, 3),
        "two_processes_s": round(two, 3),
        "speedup_2_vs_1": round(2 * one / two, 3),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def bench_ray(name: str, ds: dict[str, Any], base: dict[str, Any], tmp: Path, reps: int) -> None:
    """On the running local Ray: a warm-up job, then the same job at 1 and at 2 tasks at a time.

    Fills ``ds["end_to_end"]["ray"]``. The same 2-CPU Ray runs the same job (same plan, shards
    and samples) sequentially with ``cpus_per_task=2`` (1 worker busy, 2 threads) and
    ``cpus_per_task=1`` (2 workers busy, 1 thread each), alternating, so that drifts in machine
    load hit both alike. Each setting has its own workers (their thread variables differ): both
    are warmed up first. The machine ceiling is measured before, after and before each
    repetition; the speedup is read against their median.
    """
    floor_s = ds["decode_floor"]["decode_encode_s_per_sample"]
    warm_s, _ = timed_job(job(base, tmp / f"{name}-ray-warm", ray={"cpus_per_task": 1}))
    warm_one_s, _ = timed_job(job(base, tmp / f"{name}-ray-warm-1", ray={"cpus_per_task": 2}))
    out: dict[str, Any] = {
        "num_cpus": 2,
        "warmup_job_s": round(warm_s, 3),
        "warmup_one_task_job_s": round(warm_one_s, 3),
        "samples_per_job": int(base["num_samples"]),
        "shards_per_job": -(-int(base["num_samples"]) // int(base["samples_per_shard"])),
    }
    out["cpu_ceiling_before"] = parallel_ceiling()
    out["cpu_ceiling_reps"] = []
    runs: dict[str, list[tuple[float, dict[str, Any]]]] = {"one_task": [], "two_tasks": []}
    for r in range(reps):
        if r:
            out["cpu_ceiling_reps"].append(parallel_ceiling())
        for mode, cpus_per_task in (("one_task", 2), ("two_tasks", 1)):
            cfg = job(base, tmp / f"{name}-ray-{mode}-{r}", ray={"cpus_per_task": cpus_per_task})
            runs[mode].append(timed_job(cfg))
    for mode, done in runs.items():
        res = summarise([s for s, _ in done], [m["samples"] for _, m in done])
        res["time_ratio_vs_decode_encode_floor"] = round(res["s_per_sample"] / floor_s, 3)
        out[mode] = res
    out["speedup_2_vs_1"] = round(
        out["two_tasks"]["samples_per_s"] / out["one_task"]["samples_per_s"], 3
    )
    out["cpu_ceiling_after"] = parallel_ceiling()
    _against_ceiling(out)
    out["speedup_target"] = 1.7
    out["speedup_target_met"] = out["speedup_2_vs_1"] >= 1.7
    out["worker_peak_rss_mb"] = ray_worker_peak_rss_mb()  # workers live across jobs: cumulative
    ds["end_to_end"]["ray"] = out


def _against_ceiling(out: dict[str, Any]) -> None:
    """Adds ``speedup_over_ceiling`` (vs the median of all ceilings measured) and its target."""
    ceilings = [out["cpu_ceiling_before"], *out["cpu_ceiling_reps"], out["cpu_ceiling_after"]]
    out["cpu_ceiling_median"] = round(statistics.median(c["speedup_2_vs_1"] for c in ceilings), 3)
    out["speedup_over_ceiling"] = round(out["speedup_2_vs_1"] / out["cpu_ceiling_median"], 3)
    out["speedup_over_ceiling_target"] = CEILING_SHARE_TARGET
    out["speedup_over_ceiling_target_met"] = out["speedup_over_ceiling"] >= CEILING_SHARE_TARGET


def bench_ray_cluster(address: str, base: dict[str, Any], tmp: Path, reps: int) -> dict[str, Any]:
    """The job on all nodes of the Ray cluster at ``address`` vs on one node, and the ceiling.

    Connects to the cluster (token authentication comes from the environment, as for
    ``ray.address=``), warms both settings up, then alternates: all nodes (``cpus_per_task=1``)
    and one node (every other node's CPUs held by an idle task pinned there, run by that node's
    shard worker, so that no worker is started or stopped in between). The speedup is read
    against :func:`parallel_ceiling` of this machine, so the nodes must share it and its file
    system (as the CI cluster of 2 raylets on 127.0.0.1 does).
    """
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        if len(nodes) < 2:
            raise RuntimeError(f"the Ray cluster at {address} has {len(nodes)} node(s) with CPUs")
        per_node = {n["NodeID"]: n["Resources"]["CPU"] for n in nodes}
        out: dict[str, Any] = {"address": address, "nodes": len(nodes), "cpus": per_node}
        settings = {"ray": {"address": address, "cpus_per_task": 1}}

        def run(mode: str, tag: str) -> tuple[float, dict[str, Any]]:
            cfg = job(base, tmp / f"cluster-{mode}-{tag}", **settings)
            if mode == "all_nodes":
                return timed_job(cfg)
            flag = tmp / f"cluster-hold-{tag}"
            others = list(per_node.items())[1:]
            refs = [_hold_node(node_id, cpus, flag) for node_id, cpus in others]
            try:
                return timed_job(cfg)
            finally:
                flag.write_text("done")
                ray.get(refs)

        runs: dict[str, list[tuple[float, dict[str, Any]]]] = {"all_nodes": [], "one_node": []}
        for mode in runs:
            out[f"warmup_{mode}_job_s"] = round(run(mode, f"warm-{mode}")[0], 3)
        out["cpu_ceiling_before"] = parallel_ceiling()
        out["cpu_ceiling_reps"] = []
        for r in range(reps):
            if r:
                out["cpu_ceiling_reps"].append(parallel_ceiling())
            for mode in runs:
                runs[mode].append(run(mode, str(r)))
        for mode, done in runs.items():
            out[mode] = summarise([s for s, _ in done], [m["samples"] for _, m in done])
        out["speedup_2_vs_1"] = round(
            out["all_nodes"]["samples_per_s"] / out["one_node"]["samples_per_s"], 3
        )
        out["cpu_ceiling_after"] = parallel_ceiling()
        _against_ceiling(out)
        return out
    finally:
        ray.shutdown()


def _hold_node(node_id: str, cpus: float, flag: Path) -> Any:
    """Occupy ``cpus`` CPUs of node ``node_id`` with a task sleeping until ``flag`` exists.

    The task has the shard tasks' runtime_env, so the node's idle shard worker runs it. Returns
    its ObjectRef once it has started. ``benchmarks`` is not an installed package, so the task's
    function travels by value (a worker need not be able to import this module).
    """
    import ray
    import ray.cloudpickle
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from datagen.shard_task import shard_task_options

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    options = shard_task_options({"cpus_per_task": cpus}, None, job_level=False)
    strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    started = flag.with_name(f"{flag.name}.{node_id}.started")
    ref = (
        ray.remote(_sleep_until)
        .options(
            num_cpus=cpus,
            runtime_env=options["runtime_env"],
            scheduling_strategy=strategy,
            max_retries=0,
        )
        .remote(str(flag), str(started))
    )
    while not started.exists():
        ready, _ = ray.wait([ref], timeout=0.05)
        if ready:
            ray.get(ref)  # raises what the task raised
            raise RuntimeError(f"the placeholder task on node {node_id} ended before the job")
    return ref


def _sleep_until(flag: str, started: str) -> None:
    """Placeholder task: note that it started, then sleep until file ``flag`` exists."""
    Path(started).write_text("started")
    while not Path(flag).exists():
        time.sleep(0.05)


def start_ray() -> float:
    """Start a local 2-CPU Ray; returns the start-up seconds.

    Idle workers are kept (not stopped after Ray's default 1 s): the jobs alternate between two
    worker pools (1 and 2 threads) and must not pay for restarting workers.
    """
    import ray

    t0 = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _system_config={"idle_worker_killing_time_threshold_ms": 3_600_000},
    )
    return time.perf_counter() - t0
