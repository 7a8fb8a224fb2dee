"""Propagation benchmark (``make bench-propagate``): seconds per frame per denoising step and peak
memory of ``genprop.propagate`` under each placement option, ratios against fp32 in one run.

    python -m benchmarks.propagate [--device cpu|cuda] [--out outputs/bench/propagate]

Modes (:data:`MODES`): ``fp32`` (the reference: fp32 weights, no offloading, one process),
``bf16``, ``bf16+offload-model``, ``bf16+offload-sequential`` and ``fp32+sp2`` (the fp32
reference split over 2 sequence-parallel ranks, spawned as the tests spawn them: gloo on CPU,
nccl with one GPU per rank on CUDA, skipped with fewer than 2 GPUs).

Model and input:

* ``--device cpu``: a tiny random Wan2.1-I2V export (``write_tiny_wan_pipeline``, 9x48x48 clips,
  the geometry of ``tests/genprop/test_propagate_placement.py``), saved and loaded as an export.
* ``--device cuda``: Wan2.1-I2V-14B-480P's width cut in depth (``benchmarks.gpu.wan14b_config``:
  ``--wan-layers`` blocks, ``--wan-sce`` SCE blocks, ``--wan-size``) with random weights and a
  stand-in text encoder (``build_random_model``), built on the GPU and moved to the CPU for the
  offload modes.

The input is one seeded random clip of the model's length (one chunk) with its first frame
halved as the edit; task ``removal``, guidance 2 (two transformer passes per step), ``--steps``
steps. A run is one whole ``propagate`` call (encode, sampling, decode); ``--warmup`` runs are
dropped and the median of ``--repeats`` runs is divided by frames x steps.

Each mode runs in fresh processes so that nothing of one mode (cast weights, installed hooks,
allocator caches, a high-water mark) reaches the next. Clock: wall time (``time.perf_counter``, CUDA
synchronised), because sequence parallelism spreads one run over several processes. Peak memory:
on CUDA ``torch.cuda.max_memory_allocated`` over all runs, the largest over the ranks; on CPU the
growth of the process's peak resident set (``getrusage``'s ``ru_maxrss``) from just before the
model is loaded to the end of the runs, the largest over the ranks. tracemalloc is no use here: it
does not see torch's C++ allocations. On CPU the offload modes cannot save memory (the execution
device is the CPU itself), so their memory column shows the hooks' cost, not a saving.

Writes ``OUT.json`` (settings + one row per mode) and ``OUT.md`` (markdown table, also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.gpu import parse_size

MODES: dict[str, dict[str, Any]] = {
    "fp32": {"dtype": "fp32", "offload": "none", "ranks": 1},
    "bf16": {"dtype": "bf16", "offload": "none", "ranks": 1},
    "bf16+offload-model": {"dtype": "bf16", "offload": "model", "ranks": 1},
    "bf16+offload-sequential": {"dtype": "bf16", "offload": "sequential", "ranks": 1},
    "fp32+sp2": {"dtype": "fp32", "offload": "none", "ranks": 2},
}
REFERENCE = "fp32"
# The tiny export's clip geometry, as in tests/genprop/test_propagate_placement.py.
TINY_GEOMETRY = dict(num_frames=9, height=48, width=48, text_max_tokens=512, sce_blocks=2)
GUIDANCE = 2.0  # > 1: classifier-free guidance on, two transformer passes per step as in real use


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(spec: dict[str, Any], dtype: str) -> Any:
    """The model of ``spec`` on the CPU (export) or built on the GPU (Wan-14B width)."""
    from genprop.modeling.model import GenPropModel

    if spec["kind"] == "export":
        load_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
        return GenPropModel.from_pretrained(
            spec["export"], allowed_roots=[spec["folder"]], dtype=load_dtype
        ).eval()
    from benchmarks.gpu import wan14b_config
    from genprop.scale.meta_model import build_random_model

    config = wan14b_config(
        Path(spec["tmp"]) / f"wan14b_{os.getpid()}",
        layers=spec["layers"],
        sce_blocks=spec["sce"],
        size=tuple(spec["size"]),
        source=Path(spec["source"]),
    )
    # Random init is far faster on the GPU; the seed makes every rank build the same weights.
    torch.manual_seed(0)
    torch.cuda.manual_seed_all(0)
    return build_random_model(config, spec["device"]).to("cpu").eval()


def run_mode(rank: int, world: int, port: int, spec: dict[str, Any], out: str) -> None:
    """One process of one mode: load, propagate ``warmup + repeats`` times, write
    ``<out>/rank_<rank>.json`` (run seconds, peak memory in MiB)."""
    import torch.distributed as dist

    from genprop.inference.propagate import propagate

    torch.set_num_threads(spec["threads"])
    cuda = spec["device"].startswith("cuda")
    device = f"cuda:{rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
        spec = {**spec, "device": device}
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        # After the imports, before the model: the growth of ru_maxrss from here is what loading
        # and propagating with this mode cost (imports do not spike above their resident set).
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        model = _load(spec, spec["dtype"])
        cfg = model.config
        rng = np.random.default_rng(0)
        video = rng.integers(0, 255, (cfg.num_frames, cfg.height, cfg.width, 3), dtype=np.uint8)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for i in range(spec["warmup"] + spec["repeats"]):
            if world > 1:
                dist.barrier()  # ranks start each run together: one run's wall time
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            propagate(model, video, video[0] // 2, "removal", prompt="x", steps=spec["steps"],
                      guidance=GUIDANCE, dtype=spec["dtype"], offload=spec["offload"],
                      sequence_parallel=world, device=device)  # fmt: skip
            if cuda:
                torch.cuda.synchronize(device)
            if i >= spec["warmup"]:
                times.append(time.perf_counter() - start)
        if cuda:
            peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        else:  # Linux: ru_maxrss in KiB
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak_mb = (rss_after - rss_before) / 1024
        result = {"run_s": times, "peak_memory_mb": peak_mb, "frames": cfg.num_frames}
        (Path(out) / f"rank_{rank}.json").write_text(json.dumps(result))
    finally:
        if world > 1:
            dist.destroy_process_group()


def bench_mode(name: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one mode in fresh process(es); its row (times in seconds, memory in MiB)."""
    import torch.multiprocessing as mp

    mode = MODES[name]
    row: dict[str, Any] = {"mode": name, **mode}
    if spec["device"] == "cuda" and torch.cuda.device_count() < mode["ranks"]:
        row["skipped"] = f"needs {mode['ranks']} GPUs, {torch.cuda.device_count()} present"
        return row
    out = work / name
    out.mkdir(parents=True)
    ranks = mode["ranks"]
    args = (ranks, _free_port(), {**spec, **mode}, str(out))
    mp.start_processes(run_mode, args=args, nprocs=ranks, start_method="spawn")
    results = [json.loads((out / f"rank_{r}.json").read_text()) for r in range(ranks)]
    # A run ends when its slowest rank ends; memory is what the busiest process needed.
    runs = [max(r["run_s"][i] for r in results) for i in range(spec["repeats"])]
    run_s = statistics.median(runs)
    frames = results[0]["frames"]
    row.update(
        run_s=run_s,
        runs_s=runs,
        s_per_frame_step=run_s / (frames * spec["steps"]),
        peak_memory_mb=max(r["peak_memory_mb"] for r in results),
    )
    return row


def _tiny_export(root: Path) -> dict[str, Any]:
    """Write the tiny random Wan2.1-I2V pipeline folder and a GenProp export of it."""
    from genprop.backbones.wan.folder import wan_config
    from genprop.backbones.wan.tiny import write_tiny_wan_pipeline
    from genprop.modeling.model import GenPropModel

    folder = write_tiny_wan_pipeline(root / "tiny", variant="wan2.1-i2v")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GenPropModel.from_config(wan_config(folder, **TINY_GEOMETRY))
    model.save_pretrained(root / "model")
    return {"kind": "export", "export": str(root / "model"), "folder": str(folder)}


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows: time and memory, each beside its ratio to :data:`REFERENCE`."""
    lines = [
        "| mode | s / frame / step | vs fp32 | peak memory (MiB) | vs fp32 |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['mode']} | skipped: {row['skipped']} | | | |")
            continue
        t, m = row["s_per_frame_step"], row["peak_memory_mb"]
        rt = row.get("time_ratio")
        rm = row.get("memory_ratio")
        lines.append(
            f"| {row['mode']} | {t:.4f} | {'-' if rt is None else f'{rt:.2f}×'} | {m:.0f} | "
            f"{'-' if rm is None else f'{rm:.2f}×'} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.propagate", description=__doc__)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/propagate"))
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of {list(MODES)}")
    parser.add_argument("--steps", type=int, default=3, help="denoising steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--wan-layers", type=int, default=2, help="Wan blocks kept (cuda)")
    parser.add_argument("--wan-sce", type=int, default=1, help="SCE blocks (cuda)")
    parser.add_argument("--wan-size", type=parse_size, default=(17, 480, 832), help="FxHxW (cuda)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 for ``--device cuda`` without CUDA, 2 on bad
    arguments."""
    args = _parser().parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or REFERENCE not in modes:
        print(
            f"benchmarks.propagate: --modes: unknown {unknown} or no {REFERENCE!r} "
            f"(the reference of the ratios); expected some of {list(MODES)}",
            file=sys.stderr,
        )
        return 2
    if min(args.steps, args.repeats) < 1 or args.warmup < 0:
        print("benchmarks.propagate: --steps, --repeats >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        from benchmarks.gpu import NO_CUDA

        print(NO_CUDA.replace("benchmarks.gpu", "benchmarks.propagate"), file=sys.stderr)
        return 1
    common = {
        "device": args.device,
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": args.threads,
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.device == "cpu":
            spec = {**common, **_tiny_export(Path(tmp)), "model": "tiny Wan2.1-I2V export"}
            size = (TINY_GEOMETRY["num_frames"], TINY_GEOMETRY["height"], TINY_GEOMETRY["width"])
        else:
            from benchmarks.gpu import WAN_14B

            spec = {**common, "kind": "wan14b", "tmp": tmp, "layers": args.wan_layers,
                    "sce": args.wan_sce, "size": list(args.wan_size), "source": str(WAN_14B),
                    "model": f"Wan2.1-I2V-14B width, {args.wan_layers} blocks"}  # fmt: skip
            size = args.wan_size
        rows = []
        for name in modes:
            row = bench_mode(name, spec, Path(tmp) / "runs")
            rows.append(row)
            print(json.dumps(row), flush=True)
    ref = rows[modes.index(REFERENCE)]
    for row in rows:
        if "skipped" not in row and "skipped" not in ref:
            row["time_ratio"] = row["s_per_frame_step"] / ref["s_per_frame_step"]
            # A CPU growth can be ~0 for a tiny model; no ratio then rather than a huge one.
            if ref["peak_memory_mb"] > 0:
                row["memory_ratio"] = row["peak_memory_mb"] / ref["peak_memory_mb"]
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    report = {
        "device": device_name,
        "model": spec["model"],
        "size": list(size),
        "torch": torch.__version__,
        "commit": _commit(),
        "clock": "wall (time.perf_counter)",
        "memory": "torch.cuda.max_memory_allocated"
        if args.device == "cuda"
        else "growth of peak RSS (ru_maxrss) from before the model's load",
        **{k: common[k] for k in ("steps", "repeats", "warmup", "threads")},
        "guidance": GUIDANCE,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    header = (
        f"{device_name}, {spec['model']}, {'x'.join(map(str, size))}, {args.steps} steps, "
        f"median of {args.repeats}, {args.threads} thread(s)/process, torch {torch.__version__}"
        f"\n\n"
    )
    table = markdown_table(rows)
    args.out.with_suffix(".md").write_text(header + table + "\n")
    print(header + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
