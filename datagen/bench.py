"""Data-pipeline benchmark: ``python -m datagen.bench --out outputs/bench/data.json [--quick]``.

Everything is measured in one run, on real video and on the toy world (see
:mod:`datagen.bench_datasets`): DAVIS bmx-trees + tennis (VOS reader), E2FGVI schoolgirls
(mp4_masks reader) and the toy world at 16x256x256, and SAM 2's bedroom.mp4 (mp4_masks with a
synthetic mask folder) at 32 frames of 640x360; ``--quick`` uses tiny clips and skips the latter.

1. **floor** — the exact frames and masks the pipeline decoded for each sample, decoded again
   through the reader alone (records loaded outside the timer), plus the H.264 encoding of the
   outputs: the pipeline's target is at most 1.5x this decode + encode floor;
2. **stages** — one instrumented pass of the real :class:`~datagen.sample_builder.SampleBuilder`
   over the job's plan: index load, decode, resize/crop, augment, recipe, encode (H.264 and
   lossless) and tar write; every recipe is also timed separately on the same clips;
3. **end to end** — ``run_job`` writing real shards in-process (``ray.enabled=false``), with its
   wall and CPU seconds; on a local 2-CPU Ray, the same job (16 shards) run alternately with one
   and with two tasks at a time for the speedup (target 1.7x), after a warm-up job;
4. **memory and size** — peak RSS of the in-process job (each in a fresh process) at N and 3N
   samples, and on the same dataset linked under more names (more videos): flat = streaming;
   target 1.5 GB per worker at 32x640x360; shard bytes per sample;
5. **projection** — core-hours for all of SA-V train (:mod:`datagen.bench_projection`);
6. with ``--ray-cluster ADDRESS``, the Ray job on all nodes of that running cluster vs on one
   (:func:`datagen.bench_ray.bench_ray_cluster`), read against the same machine ceiling.

``--datasets NAME ...`` measures only those datasets (e.g. ``--datasets davis`` for the Ray part
on its dataset, in a few minutes).

Throughputs are medians over ``--reps`` repetitions (the 640x360 set: one). Ratios compare
numbers from this run only. Writes the JSON, ``data.md`` next to it and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from datagen.bench_datasets import REPO, BenchDataset, bench_datasets
from datagen.bench_projection import project_sav
from datagen.bench_stages import measure_floor, measure_stages
from datagen.bench_table import markdown_table

# The dataset whose Ray speedup is measured (full run; --quick: the toy world), and its job:
# enough shards (16 of 2 samples) that both workers stay busy and neither the job's start and
# end nor the last round of shards (one worker idle) dominates.
RAY_DATASET, RAY_SAMPLES, RAY_SAMPLES_PER_SHARD = "davis", 32, 2
# Every dataset the benchmark knows (see datagen.bench_datasets); --datasets picks among them.
DATASET_NAMES = ("toyworld", "davis", "schoolgirls", "bedroom_640x360")


def machine() -> dict[str, Any]:
    """The machine the numbers come from."""
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Linux: ``VmHWM`` from ``/proc/self/status``, because ``ru_maxrss`` survives ``exec`` and a
    fresh child would report its parent's peak; elsewhere ``resource.getrusage``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # ru_maxrss: bytes on macOS, else KiB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


def base_config(source: dict[str, Any], *, frames: int, size: tuple[int, int]) -> dict[str, Any]:
    """The real ``genprop_data`` config (Hydra defaults) as a plain dict, for ``source``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("genprop_data", [f"source={source['name']}"])
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    plain["source"] = dict(source)
    plain["clip"].update(frames=frames, size=[int(size[0]), int(size[1])])
    plain["progress"] = False
    return plain


def job(base: dict[str, Any], out: Path, **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` writing to ``out`` with top-level keys / ``ray`` / ``encode`` changed."""
    cfg = json.loads(json.dumps(base))
    cfg["output_dir"] = str(out)
    for key, value in changes.items():
        if key in ("ray", "encode"):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def timed_job(cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Run ``run_job(cfg)``; returns ``(wall seconds, manifest)``."""
    from datagen.runner import run_job

    t0 = time.perf_counter()
    manifest = run_job(cfg).manifest
    return time.perf_counter() - t0, manifest


def _child_main() -> None:
    """Child process entry: run the jobs given as JSON on stdin in-process, print JSON results.

    The peak RSS (VmHWM) is read after the imports and after each job: a peak that does not grow
    from the N-sample jobs to a following 3N-sample job shows that the pipeline streams.
    """
    cfgs = json.loads(sys.stdin.read())
    result: dict[str, Any] = {"peak_rss_after_imports_mb": peak_rss_mb()}
    for key in ("seconds", "cpu_s", "samples", "bytes", "peak_rss_mb"):
        result[key] = []
    for cfg in cfgs:
        cpu0 = os.times()
        seconds, manifest = timed_job(cfg)
        cpu1 = os.times()
        result["seconds"].append(seconds)
        result["cpu_s"].append(cpu1.user - cpu0.user + cpu1.system - cpu0.system)
        result["samples"].append(manifest["samples"])
        result["bytes"].append(sum(sh["bytes"] for sh in manifest["shards"]))
        result["peak_rss_mb"].append(peak_rss_mb())
    print(json.dumps(result))


def in_fresh_process(cfgs: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the jobs in-process in a fresh interpreter (so that its peak RSS is theirs alone)."""
    code = "from datagen.bench import _child_main; _child_main()"
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(cfgs), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child process failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(seconds: list[float], samples: list[int]) -> dict[str, Any]:
    """Median samples/s over repetitions (and each repetition's)."""
    rates = [n / s for n, s in zip(samples, seconds, strict=True)]
    return {
        "samples_per_s": round(statistics.median(rates), 3),
        "reps_samples_per_s": [round(r, 3) for r in rates],
        "s_per_sample": round(1 / statistics.median(rates), 5),
        "samples_per_job": samples[0],
    }


def dataset_config(ds: BenchDataset, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job config of a benchmark dataset (optionally on another source, e.g. its grown copy)."""
    base = base_config(source or ds.source, frames=ds.frames, size=ds.size)
    base.update(num_samples=ds.num_samples, samples_per_shard=ds.samples_per_shard)
    return base


def bench_dataset(name: str, ds: BenchDataset, tmp: Path, *, reps: int) -> dict[str, Any]:
    """Every measurement on one dataset except Ray's (see the module docstring)."""
    base = dataset_config(ds)
    print(f"[bench] {time.strftime('%H:%M:%S')} {name}: stages", file=sys.stderr, flush=True)
    stages = measure_stages(base, tmp / f"{name}-stages", reps=ds.reps or reps)
    floor = measure_floor(base, stages.pop("decode_log"), reps=ds.reps or reps)
    floor_s = floor["s_per_sample"]
    floor_enc_s = floor_s + stages["stages"]["encode_h264"]["s_per_sample"]
    floor["decode_encode_s_per_sample"] = round(floor_enc_s, 5)
    print(
        f"[bench] {time.strftime('%H:%M:%S')} {name}: end to end in-process",
        file=sys.stderr,
        flush=True,
    )
    n = int(base["num_samples"])
    local = {"enabled": False}
    reps = ds.reps or reps
    cfgs = [job(base, tmp / f"{name}-inproc-{r}", ray=local) for r in range(reps)]
    if ds.three_n:
        cfgs.append(job(base, tmp / f"{name}-inproc-3n", ray=local, num_samples=3 * n))
    if ds.grown is not None:  # the same job on the dataset linked under more names, last
        cfgs.append(job(dataset_config(ds, ds.grown[1]), tmp / f"{name}-grown", ray=local))
    child = in_fresh_process(cfgs)
    inproc = summarise(child["seconds"][:reps], child["samples"][:reps])
    cpu = [c / k for c, k in zip(child["cpu_s"][:reps], child["samples"][:reps], strict=True)]
    inproc["cpu_s_per_sample"] = round(statistics.median(cpu), 5)
    inproc["time_ratio_vs_floor"] = round(inproc["s_per_sample"] / floor_s, 3)
    ratio = round(inproc["s_per_sample"] / floor_enc_s, 3)
    inproc["time_ratio_vs_decode_encode_floor"] = ratio
    inproc["ratio_target"], inproc["ratio_target_met"] = 1.5, ratio <= 1.5
    peaks = child["peak_rss_mb"]
    memory: dict[str, Any] = {
        "in_process_peak_rss_mb": {
            "n": n,
            "after_imports": child["peak_rss_after_imports_mb"],
            "after_n_jobs": peaks[reps - 1],
        },
    }
    if ds.three_n:
        inproc["samples_per_s_3n_job"] = round(child["samples"][reps] / child["seconds"][reps], 3)
        memory["in_process_peak_rss_mb"]["after_3n_job"] = peaks[reps]
        memory["in_process_peak_rss_mb"]["growth_3n_vs_n"] = round(peaks[reps] / peaks[reps - 1], 3)
    if ds.grown is not None:  # peak RSS is a high-water mark: growth = the bigger set needed more
        memory["dataset_sizes_peak_rss_mb"] = {
            "videos": [ds.videos, ds.grown[0]],
            "peak_rss_mb": [peaks[-2], peaks[-1]],
            "growth": round(peaks[-1] / peaks[-2], 3),
            "samples_per_job": n,
            "how": "one fresh process: the smaller set's jobs, then the same job on the bigger "
            "set; peak RSS (high-water mark) read after each",
        }
    worst = peaks[-1]  # the high-water mark after every job
    memory["worker_peak_rss_mb"] = worst
    memory["target_mb"], memory["target_met"] = 1536, worst <= 1536
    result: dict[str, Any] = {
        "config": {
            "source": base["source"]["name"],
            "frames": base["clip"]["frames"],
            "size": base["clip"]["size"],
            "num_samples": n,
            "samples_per_shard": base["samples_per_shard"],
            "videos": ds.videos,
            "source_size": list(ds.source_size) if ds.source_size else None,
            "repetitions": ds.reps or reps,
            "codec": base["encode"]["codec"],
            "preset": base["encode"]["preset"],
            "mix": base["mix"],
        },
        "notes": ds.notes,
        "decode_floor": floor,
        **stages,
        "end_to_end": {"in_process": inproc},
        "memory": memory,
    }
    result["bytes_per_sample"]["h264_end_to_end_shards"] = round(
        child["bytes"][0] / child["samples"][0]
    )
    return result


def run(
    out: Path,
    *,
    quick: bool,
    reps: int,
    use_ray: bool,
    command: str = "",
    datasets: list[str] | None = None,
    ray_cluster: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark, write ``out`` (JSON) and ``data.md`` beside it; returns the results.

    Args:
        datasets: measure only these (names as in the report); ``None``: all found.
        ray_cluster: address of a running multi-node Ray cluster to measure too (or ``None``).
    """
    t_start = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "datagen",
        "version": 1,
        "command": command or "python -m datagen.bench",
        "quick": quick,
        "repetitions": reps,
        "machine": machine(),
        "datasets": {},
        "skipped": {},
    }
    with tempfile.TemporaryDirectory(prefix="genprop-bench-") as tmp_name:
        tmp = Path(tmp_name)
        found, report["skipped"] = bench_datasets(tmp, quick)
        if datasets is not None:
            for name in [n for n in found if n not in datasets]:
                report["skipped"][name] = "not in --datasets"
                del found[name]
        for name, ds in found.items():
            report["datasets"][name] = bench_dataset(name, ds, tmp, reps=reps)
        if use_ray and not found:
            report["skipped"]["ray"] = "no dataset measured"
        elif use_ray:  # after everything else, so that idle Ray processes disturb nothing
            import ray

            from datagen.bench_ray import bench_ray, start_ray  # imports this module

            report["ray"] = {"num_cpus": 2, "startup_s": round(start_ray(), 3)}
            name = RAY_DATASET if not quick and RAY_DATASET in found else "toyworld"
            name = name if name in found else next(iter(found))
            base = dataset_config(found[name])
            if not quick:
                base.update(num_samples=RAY_SAMPLES, samples_per_shard=RAY_SAMPLES_PER_SHARD)
            for other in found:
                if other != name:
                    report["skipped"][f"ray on {other}"] = f"Ray is measured on {name} only"
            try:
                print(f"[bench] {time.strftime('%H:%M:%S')} {name}: Ray", file=sys.stderr)
                bench_ray(name, report["datasets"][name], base, tmp, reps)
            finally:
                ray.shutdown()
            if ray_cluster:
                from datagen.bench_ray import bench_ray_cluster

                print(f"[bench] {time.strftime('%H:%M:%S')} {name}: Ray cluster", file=sys.stderr)
                report["ray_cluster"] = {
                    "dataset": name,
                    **bench_ray_cluster(ray_cluster, base, tmp, reps),
                }
        else:
            report["skipped"]["ray"] = "--no-ray given"
    report["projection_sav"] = project_sav(report["datasets"])
    report["driver_peak_rss_mb"] = peak_rss_mb()
    report["machine"]["loadavg_at_end"] = (
        list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    )
    report["total_s"] = round(time.perf_counter() - t_start, 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    table = markdown_table(report)
    (out.parent / "data.md").write_text(table)
    print(table)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datagen.bench", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/bench/data.json"), help="JSON path")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 2)")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray measurements")
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="only these datasets")
    p.add_argument(
        "--ray-cluster",
        metavar="ADDRESS",
        help="also measure all nodes vs one node of this running Ray cluster (HOST:PORT)",
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    reps = args.reps if args.reps is not None else 2
    if reps < 1:
        p.error(f"--reps must be >= 1, got {reps}")
    if args.ray_cluster and args.no_ray:
        p.error("--ray-cluster needs the Ray measurements (drop --no-ray)")
    unknown = sorted(set(args.datasets or ()) - set(DATASET_NAMES))
    if unknown:
        p.error(f"--datasets: unknown {unknown}; known: {', '.join(DATASET_NAMES)}")
    command = " ".join(["python -m datagen.bench", *argv])
    run(
        args.out,
        quick=args.quick,
        reps=reps,
        use_ray=not args.no_ray,
        command=command,
        datasets=args.datasets,
        ray_cluster=args.ray_cluster,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
