"""Data-pipeline benchmark: ``python -m benchmarks.data --out outputs/bench/data.json [--quick]``.

Everything is measured in one run, on real video and on the toy world (see
:mod:`benchmarks.data.datasets`): DAVIS bmx-trees + tennis (VOS reader), E2FGVI schoolgirls
(mp4_masks reader) and the toy world at 16x256x256, and SAM 2's bedroom.mp4 (mp4_masks with a
synthetic mask folder) at 32 frames of 640x360; ``--quick`` uses tiny clips and skips the latter.
The real videos are read from ``--samples-root DIR`` (see :mod:`benchmarks.data.datasets` for
its layout); without it only the toy world is measured.

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
5. **projection** — core-hours for all of SA-V train (:mod:`benchmarks.data.projection`);
6. with ``--ray-cluster ADDRESS``, the Ray job on all nodes of that running cluster vs on one
   (:func:`benchmarks.data.ray_scaling.bench_ray_cluster`), read against the same machine ceiling.

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
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.data.datasets import BenchDataset, bench_datasets
from benchmarks.data.jobs import base_config, in_fresh_process, job, peak_rss_mb, summarise
from benchmarks.data.projection import project_sav
from benchmarks.data.ray_scaling import bench_ray, bench_ray_cluster, start_ray
from benchmarks.data.stages import measure_floor, measure_stages
from benchmarks.data.table import markdown_table

# The dataset whose Ray speedup is measured (full run; --quick: the toy world), and its job:
# enough shards (16 of 2 samples) that both workers stay busy and neither the job's start and
# end nor the last round of shards (one worker idle) dominates.
RAY_DATASET, RAY_SAMPLES, RAY_SAMPLES_PER_SHARD = "davis", 32, 2
# Every dataset the benchmark knows (see benchmarks.data.datasets); --datasets picks among them.
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
    samples_root: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark, write ``out`` (JSON) and ``data.md`` beside it; returns the results.

    Args:
        datasets: measure only these (names as in the report); ``None``: all found.
        ray_cluster: address of a running multi-node Ray cluster to measure too (or ``None``).
        samples_root: folder of the real sample videos (``None``: the toy world only).
    """
    t_start = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "datagen",
        "version": 1,
        "command": command or "python -m benchmarks.data",
        "quick": quick,
        "repetitions": reps,
        "machine": machine(),
        "datasets": {},
        "skipped": {},
    }
    with tempfile.TemporaryDirectory(prefix="genprop-bench-") as tmp_name:
        tmp = Path(tmp_name)
        found, report["skipped"] = bench_datasets(tmp, quick, samples_root)
        for name, why in report["skipped"].items():
            print(f"[bench] {name} skipped: {why}", file=sys.stderr, flush=True)
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
    """CLI entry point (``python -m benchmarks.data``); returns the exit status."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.data", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("outputs/bench/data.json"), help="JSON path")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 2)")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray measurements")
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="only these datasets")
    p.add_argument(
        "--samples-root",
        type=Path,
        metavar="DIR",
        help="folder of the real sample videos (vos/, mp4_masks/, video/); default: none, the "
        "real-video datasets are skipped",
    )
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
    if args.samples_root is not None and not args.samples_root.is_dir():
        p.error(f"--samples-root: {args.samples_root} is not a directory")
    unknown = sorted(set(args.datasets or ()) - set(DATASET_NAMES))
    if unknown:
        p.error(f"--datasets: unknown {unknown}; known: {', '.join(DATASET_NAMES)}")
    command = " ".join(["python -m benchmarks.data", *argv])
    run(
        args.out,
        quick=args.quick,
        reps=reps,
        use_ray=not args.no_ray,
        command=command,
        datasets=args.datasets,
        ray_cluster=args.ray_cluster,
        samples_root=args.samples_root,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
