"""Data-pipeline benchmark: ``python -m datagen.bench --out outputs/bench/data.json [--quick]``.

Everything is measured in one run, on the toy world (written to a temp folder) and on the DAVIS
samples in ``../shared/data/vos`` (bmx-trees, tennis; skipped with a note when absent):

1. **decode floor** — the exact frames and masks the pipeline decoded for each sample, decoded
   again through the reader alone (records loaded outside the timer);
2. **stages** — one instrumented pass of the real :class:`~datagen.sample_builder.SampleBuilder`
   over the job's plan: index load, decode, resize/crop, augment, recipe, encode (H.264 and
   lossless) and tar write; every recipe is also timed separately on the same clips;
3. **end to end** — ``run_job`` writing real shards in-process (``ray.enabled=false``) and on a
   local Ray with 2 CPUs (2 tasks at once, and 1 at a time for the speedup); Ray start-up and the
   first (worker warm-up) job are reported apart from the throughput;
4. **memory and size** — peak RSS of the in-process job at N and 3N samples (each in a fresh
   process: flat = streaming), of the Ray workers and of this process; shard bytes per sample.

Throughputs are medians over ``--reps`` repetitions. Ratios compare numbers from this run only.
Writes the JSON, ``data.md`` next to it (a markdown table) and prints the table.
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

from datagen.bench_stages import measure_floor, measure_stages
from datagen.bench_table import markdown_table

REPO = Path(__file__).resolve().parents[1]
DAVIS_ROOT = REPO / ".." / "shared" / "data" / "vos"
DAVIS_SEQUENCES = ("bmx-trees", "tennis")


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


def base_config(source: dict[str, Any], *, frames: int, size: int) -> dict[str, Any]:
    """The real ``genprop_data`` config (Hydra defaults) as a plain dict, for ``source``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("genprop_data", [f"source={source['name']}"])
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    plain["source"] = dict(source)
    plain["clip"].update(frames=frames, size=[size, size])
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
    for key in ("seconds", "samples", "bytes", "peak_rss_mb"):
        result[key] = []
    for cfg in cfgs:
        seconds, manifest = timed_job(cfg)
        result["seconds"].append(seconds)
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


def bench_ray(name: str, ds: dict[str, Any], base: dict[str, Any], tmp: Path, reps: int) -> None:
    """On the running local Ray: a warm-up job, then throughput at 2 and at 1 task at a time.

    Fills ``ds["end_to_end"]["ray"]``. Two tasks at once vs one (``cpus_per_task=2``) on the same
    2-CPU Ray gives the speedup without restarting Ray.
    """
    floor_s = ds["decode_floor"]["s_per_sample"]
    warm_s, _ = timed_job(job(base, tmp / f"{name}-ray-warm", ray={"enabled": True}))
    out: dict[str, Any] = {"num_cpus": 2, "warmup_job_s": round(warm_s, 3)}
    for mode, cpus_per_task in (("two_tasks", 1), ("one_task", 2)):
        runs = [
            timed_job(
                job(base, tmp / f"{name}-ray-{mode}-{r}", ray={"cpus_per_task": cpus_per_task})
            )
            for r in range(reps)
        ]
        res = summarise([s for s, _ in runs], [m["samples"] for _, m in runs])
        res["time_ratio_vs_floor"] = round(res["s_per_sample"] / floor_s, 3)
        out[mode] = res
    out["speedup_2_vs_1"] = round(
        out["two_tasks"]["samples_per_s"] / out["one_task"]["samples_per_s"], 3
    )
    out["worker_peak_rss_mb"] = ray_worker_peak_rss_mb()  # workers live across jobs: cumulative
    ds["end_to_end"]["ray"] = out


def start_ray() -> float:
    """Start a local 2-CPU Ray; returns the start-up seconds."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return time.perf_counter() - t0


def bench_dataset(name: str, base: dict[str, Any], tmp: Path, *, reps: int) -> dict[str, Any]:
    """Every measurement on one dataset except Ray's (see the module docstring)."""
    print(f"[bench] {time.strftime('%H:%M:%S')} {name}: stages", file=sys.stderr, flush=True)
    stages = measure_stages(base, tmp / f"{name}-stages", reps=reps)
    floor = measure_floor(base, stages.pop("decode_log"), reps=reps)
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
    cfgs = [job(base, tmp / f"{name}-inproc-{r}", ray=local) for r in range(reps)]
    cfgs.append(job(base, tmp / f"{name}-inproc-3n", ray=local, num_samples=3 * n))
    child = in_fresh_process(cfgs)
    inproc = summarise(child["seconds"][:reps], child["samples"][:reps])
    inproc["time_ratio_vs_floor"] = round(inproc["s_per_sample"] / floor_s, 3)
    inproc["time_ratio_vs_decode_encode_floor"] = round(inproc["s_per_sample"] / floor_enc_s, 3)
    inproc["samples_per_s_3n_job"] = round(child["samples"][-1] / child["seconds"][-1], 3)
    peaks = child["peak_rss_mb"]
    result: dict[str, Any] = {
        "config": {
            "source": base["source"]["name"],
            "frames": base["clip"]["frames"],
            "size": base["clip"]["size"],
            "num_samples": n,
            "samples_per_shard": base["samples_per_shard"],
            "codec": base["encode"]["codec"],
            "mix": base["mix"],
        },
        "decode_floor": floor,
        **stages,
        "end_to_end": {"in_process": inproc},
        "memory": {
            "in_process_peak_rss_mb": {
                "n": n,
                "after_imports": child["peak_rss_after_imports_mb"],
                "after_n_jobs": peaks[reps - 1],
                "after_3n_job": peaks[-1],
                "growth_3n_vs_n": round(peaks[-1] / peaks[reps - 1], 3),
            },
        },
    }
    result["bytes_per_sample"]["h264_end_to_end_shards"] = round(
        child["bytes"][0] / child["samples"][0]
    )
    return result


def datasets(tmp: Path, quick: bool) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``{name: base config}`` of the datasets to measure, and ``{name: note}`` of skipped ones."""
    from datagen.toyworld.world import WorldConfig
    from datagen.toyworld.writer import write_dataset

    videos, n_toy, n_davis = (8, 4, 2) if quick else (32, 32, 12)
    toy_root = write_dataset(tmp / "toyworld", WorldConfig(), num_videos=videos, progress=None)
    toy = base_config({"name": "toyworld", "root": str(toy_root)}, frames=8, size=64)
    toy.update(num_samples=n_toy, samples_per_shard=max(1, n_toy // 4))
    found: dict[str, dict[str, Any]] = {"toyworld": toy}
    skipped: dict[str, str] = {}
    missing = [s for s in DAVIS_SEQUENCES if not (DAVIS_ROOT / "JPEGImages" / s).is_dir()]
    if missing:
        skipped["davis"] = f"{DAVIS_ROOT.resolve()} lacks {missing}: DAVIS part not run"
        return found, skipped
    root = tmp / "davis"  # only the chosen sequences, linked (never copied)
    for sub in ("JPEGImages", "Annotations"):
        (root / sub).mkdir(parents=True)
        for seq in DAVIS_SEQUENCES:
            (root / sub / seq).symlink_to((DAVIS_ROOT / sub / seq).resolve())
    davis = base_config(
        {"name": "vos", "root": str(root)}, frames=4 if quick else 16, size=64 if quick else 256
    )
    davis.update(num_samples=n_davis, samples_per_shard=max(1, n_davis // 4))
    found["davis"] = davis
    return found, skipped


def run(out: Path, *, quick: bool, reps: int, use_ray: bool, command: str = "") -> dict[str, Any]:
    """Run the benchmark, write ``out`` (JSON) and ``data.md`` beside it; returns the results."""
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
        found, report["skipped"] = datasets(tmp, quick)
        for name, base in found.items():
            report["datasets"][name] = bench_dataset(name, base, tmp, reps=reps)
        if use_ray:  # after everything else, so that idle Ray processes disturb nothing
            import ray

            report["ray"] = {"num_cpus": 2, "startup_s": round(start_ray(), 3)}
            ray_sets = list(found)[:1] if quick else list(found)
            for name in list(found)[len(ray_sets) :]:
                report["skipped"][f"ray on {name}"] = "--quick measures Ray on the toy world only"
            try:
                for name, base in ((n, found[n]) for n in ray_sets):
                    print(
                        f"[bench] {time.strftime('%H:%M:%S')} {name}: Ray",
                        file=sys.stderr,
                        flush=True,
                    )
                    bench_ray(name, report["datasets"][name], base, tmp, reps)
            finally:
                ray.shutdown()
        else:
            report["skipped"]["ray"] = "--no-ray given"
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
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 2)")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray measurements")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    reps = args.reps if args.reps is not None else (2 if args.quick else 3)
    if reps < 1:
        p.error(f"--reps must be >= 1, got {reps}")
    command = " ".join(["python -m datagen.bench", *argv])
    run(args.out, quick=args.quick, reps=reps, use_ray=not args.no_ray, command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
