"""One GPU check (``make gpu-check``): the ``gpu`` tests, ``make bench-gpu``, the propagation
benchmark on CUDA and a shortened ``make demo-gpu`` in one command, sized for about 8.5 minutes on
one H100, writing one JSON.

    python -m benchmarks.gpu_check [--out outputs/gpu_check] [--python PY]

Each part runs as its own process with its own time budget (a part that overruns is stopped and
reported as ``timeout``; the others still run):

* ``tests``: ``pytest -m gpu`` (``--junitxml``): passed / failed / skipped counts;
* ``bench``: ``python -m benchmarks.gpu``: bf16 GenProp step time, peak memory against the
  planner's prediction and MFU per case (the Wan-14B width cut in depth, and the presets);
* ``propagate``: ``python -m benchmarks.propagate --device cuda``: seconds per frame per
  denoising step and peak memory of propagation in fp32, bf16, bf16 with model / sequential
  offloading (and 2 sequence-parallel ranks when 2 GPUs exist) at the Wan-14B width cut in depth,
  at a reduced size (:data:`PROPAGATE_ARGS`);
* ``demo``: ``make demo-gpu`` at a reduced size (:data:`DEMO_OVERRIDES`): the whole chain (world,
  shards, both stages, benchmark, report) on the card, and GenProp's mean of each task's headline
  metric.

``OUT/gpu_check.json`` holds the card, torch and CUDA versions, each part's status, seconds and
numbers. Exits 1 without a CUDA device, 3 when a part failed (the JSON is written first).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu import NO_CUDA
from contracts.jsonfile import read_json_object

# Seconds per part: about 8.5 minutes in all on one H100 (the demo's chain is the longest part).
BUDGET_S = {"tests": 100, "bench": 130, "propagate": 90, "demo": 210}
# The propagation benchmark sized for its budget: 5 fresh processes, each building the model.
PROPAGATE_ARGS = ("--wan-size", "17x480x832", "--steps", "2", "--repeats", "2", "--warmup", "1")
# make demo-gpu at a size that trains both stages for real in about 3 GPU minutes.
DEMO_OVERRIDES = (
    "DEMO_GPU_VIDEOS=120",
    "DEMO_GPU_SAMPLES=1024",
    "DEMO_GPU_STAGE1_STEPS=300",
    "DEMO_GPU_STAGE2_STEPS=200",
    "DEMO_CASES=2",
    "DEMO_GPU_PUBLISH=",
)
TAIL_CHARS = 2000  # of a failed part's output, kept in the JSON


def run_part(command: list[str], budget_s: float, log: Path) -> dict[str, Any]:
    """Run one part; its output goes to ``log``. Returns status, seconds and return code."""
    start = time.perf_counter()
    with log.open("w") as out:
        try:
            code = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=budget_s, check=False
            ).returncode
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            code, status = None, "timeout"
    part: dict[str, Any] = {
        "command": " ".join(command),
        "status": status,
        "returncode": code,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if status != "ok":
        part["output_tail"] = log.read_text(errors="replace")[-TAIL_CHARS:]
    return part


def junit_counts(path: Path) -> dict[str, int]:
    """Test counts of a pytest ``--junitxml`` file: tests, passed, failed, errors, skipped."""
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    return {
        "tests": counts["tests"],
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
    }


def demo_summary(demo_dir: Path) -> dict[str, dict[str, float]]:
    """GenProp's mean of each metric per task, from the demo's ``eval/metrics.json``."""
    metrics = read_json_object(demo_dir / "eval" / "metrics.json", what="metrics file")
    return {
        task: methods["genprop"]
        for task, methods in metrics["averages"].items()
        if "genprop" in methods
    }


def check(out: Path, python: str) -> dict[str, Any]:
    """Run the four parts into ``out`` and return the report (also written as JSON)."""
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "parts": {},
    }
    junit = out / "gpu_tests.xml"
    tests = [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    part = run_part([*tests, f"--junitxml={junit}"], BUDGET_S["tests"], out / "tests.log")
    if junit.is_file():
        part.update(junit_counts(junit))
    report["parts"]["tests"] = part
    bench_out = out / "bench_gpu"
    bench = [python, "-m", "benchmarks.gpu", "--out", str(bench_out)]
    part = run_part(bench, BUDGET_S["bench"], out / "bench.log")
    if bench_out.with_suffix(".json").is_file():
        part["rows"] = read_json_object(bench_out.with_suffix(".json"), what="bench")["rows"]
    report["parts"]["bench"] = part
    prop_out = out / "bench_propagate"
    prop = [python, "-m", "benchmarks.propagate", "--device", "cuda", *PROPAGATE_ARGS]
    part = run_part([*prop, "--out", str(prop_out)], BUDGET_S["propagate"], out / "propagate.log")
    if prop_out.with_suffix(".json").is_file():
        part["rows"] = read_json_object(prop_out.with_suffix(".json"), what="bench")["rows"]
    report["parts"]["propagate"] = part
    demo_dir = out / "demo_gpu"
    demo = ["make", "demo-gpu", f"DEMO_GPU={demo_dir}", *DEMO_OVERRIDES]
    part = run_part(demo, BUDGET_S["demo"], out / "demo.log")
    if (demo_dir / "eval" / "metrics.json").is_file():
        part["genprop_means"] = demo_summary(demo_dir)
    report["parts"]["demo"] = part
    report["seconds"] = round(sum(p["seconds"] for p in report["parts"].values()), 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    """0 when every part passed, 1 without CUDA, 3 when a part failed or timed out."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu_check"))
    parser.add_argument("--python", default=sys.executable, help="the Python of the project")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 1
    report = check(args.out, args.python)
    for name, part in report["parts"].items():
        print(f"{name}: {part['status']} in {part['seconds']} s")
    print(f"report: {args.out / 'gpu_check.json'}")
    return 0 if all(p["status"] == "ok" for p in report["parts"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
