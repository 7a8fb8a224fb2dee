"""Pick a classifier-free guidance scale per task from a sweep on validation cases.

```
python -m evaluation.guidance SWEEP_DIR/g3 SWEEP_DIR/g5 ... [--out best.json]
```
Each folder is a ``genprop-eval --model ... --guidance G`` report (``metrics.json``, and
``genprop/run.json`` recording ``G``). For every task the scale with the best headline metric of
method ``genprop`` wins (ties: the lower scale, the cheaper departure from the model's own
prediction). Prints the ``--guidance`` spec for ``genprop-eval`` (the most common winner as the
default, the other tasks named) and writes it with the table to ``--out``.

Run it on validation cases (another world seed), never on the benchmark it will be scored on.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Per task: the metric the sweep maximises (the one each task's target is stated in).
HEADLINE: dict[str, str] = {
    "removal": "PSNR_edit",
    "edit": "PSNR_edit",
    "insertion": "PSNR_edit",
    "tracking": "J_obj+fx",
    "outpainting": "PSNR_edit",
}
METHOD = "genprop"


def read_sweep_run(folder: Path) -> tuple[float, dict[str, Any]]:
    """``(guidance, metrics)`` of one sweep folder (one guidance for every task)."""
    run_file, metrics_file = folder / METHOD / "run.json", folder / "metrics.json"
    for f in (run_file, metrics_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing; run genprop-eval --model ... --out {folder}")
    guidance = json.loads(run_file.read_text()).get("options", {}).get("guidance")
    if isinstance(guidance, (int, float)) and not isinstance(guidance, bool):
        guidance = {"*": guidance}  # reports written before per-task guidance
    if not isinstance(guidance, dict) or set(guidance) != {"*"}:
        raise ValueError(
            f"{run_file}: options.guidance is {guidance!r}, expected one scale for every task "
            "(genprop-eval --guidance G)"
        )
    return float(guidance["*"]), json.loads(metrics_file.read_text())


def pick_per_task(runs: dict[float, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: ``{"guidance": best, "metric": name, "values": {g: value}}``.

    Tasks whose headline metric is missing from every run are left out.
    """
    best: dict[str, dict[str, Any]] = {}
    for task, metric in HEADLINE.items():
        values = {}
        for g, m in sorted(runs.items()):
            v = m.get("averages", {}).get(task, {}).get(METHOD, {}).get(metric)
            if v is not None and not math.isnan(float(v)):
                values[g] = float(v)
        if values:
            top = max(values.values())
            winner = min(g for g, v in values.items() if v == top)
            best[task] = {"guidance": winner, "metric": metric, "values": values}
    return best


def most_common(winners: dict[str, float], tie: Callable[[float], float] = float) -> float:
    """The value most tasks won with (ties: the lowest ``tie(V)``, by default the lower value)."""
    if not winners:
        raise ValueError("no task has a headline metric in the sweep")
    counts = Counter(winners.values())
    return min(counts, key=lambda v: (-counts[v], tie(v)))


def per_task_spec(winners: dict[str, float], tie: Callable[[float], float] = float) -> str:
    """``"V,TASK=V,..."``: the :func:`most_common` value first, then the exceptions."""
    default = most_common(winners, tie)
    parts = [f"{default:g}"] + [f"{t}={v:g}" for t, v in winners.items() if v != default]
    return ",".join(parts)


def guidance_spec(best: dict[str, dict[str, Any]]) -> str:
    """The ``genprop-eval --guidance`` spec: the most common winner, then the exceptions."""
    return per_task_spec({task: b["guidance"] for task, b in best.items()})


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the spec and a per-task table; write ``--out`` when given."""
    p = argparse.ArgumentParser(prog="python -m evaluation.guidance", description=__doc__)
    p.add_argument("runs", type=Path, nargs="+", help="genprop-eval report folders, one per G")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the choice")
    args = p.parse_args(argv)
    runs: dict[float, dict[str, Any]] = {}
    for folder in args.runs:
        g, metrics = read_sweep_run(folder)
        if g in runs:
            raise SystemExit(f"{folder}: guidance {g:g} appears in two sweep folders")
        runs[g] = metrics
    best = pick_per_task(runs)
    spec = guidance_spec(best)
    scales = sorted(runs)
    print("| task | metric | " + " | ".join(f"g={g:g}" for g in scales) + " | best |")
    print("|---|---|" + "---|" * (len(scales) + 1))
    for task, b in best.items():
        cells = [f"{b['values'][g]:.3f}" if g in b["values"] else "–" for g in scales]
        print(f"| {task} | {b['metric']} | " + " | ".join(cells) + f" | {b['guidance']:g} |")
    print(f"\n--guidance {spec}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table = {
            t: {**b, "values": {f"{g:g}": v for g, v in b["values"].items()}}
            for t, b in best.items()
        }
        args.out.write_text(json.dumps({"spec": spec, "per_task": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
