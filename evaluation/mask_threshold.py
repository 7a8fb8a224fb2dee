"""Pick the MPD mask threshold per task on validation cases (the export's
``sampling.mask_threshold`` / ``task_mask_threshold``).

```
python -m evaluation.mask_threshold --cases VAL --outputs EVAL/genprop [--out best.json]
```
``EVAL`` is a ``genprop-eval --model ...`` report on the validation cases; its
``genprop/<id>_masks/`` hold the MPD's probabilities as 8-bit PNGs (pixel preservation does not
change them, so a ``--preserve off`` report serves). For every task and every threshold of
:data:`GRID` the MPD's headline J, the one ``genprop-eval`` reports (``MPD_J_obj+fx`` for
tracking, ``MPD_J_edit`` otherwise), is averaged over the task's cases; the best wins (ties: the
one nearest 0.5). Prints the table, the ``genprop-eval --mask-threshold`` spec and the values for
the export's ``sampling`` (the most common winner as ``mask_threshold``, ties: the nearest 0.5),
and writes them with the table to ``--out``.

Run it on validation cases (another world seed), never on the benchmark it will be scored on.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from contracts.cases import output_masks
from evaluation.cases import CaseError, EvalCase, list_cases, load_case, load_mask_probabilities
from evaluation.guidance import most_common, per_task_spec
from evaluation.metrics import region_j

GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95


def mpd_target(case: EvalCase) -> tuple[str, np.ndarray]:
    """The MPD's headline metric for ``case`` and the ``(T, H, W)`` mask it is scored against."""
    if case.task == "tracking":
        fx = case.object_and_effects
        return ("MPD_J_obj", case.object_mask) if fx is None else ("MPD_J_obj+fx", fx)
    return "MPD_J_edit", case.edit_mask


def sweep(cases: Path, outputs: Path, grid: tuple[float, ...] = GRID) -> dict[str, Any]:
    """Per task: ``{"metric": name, "cases": n, "values": {threshold: mean J over frames 1..}}``."""
    scores: dict[str, dict[str, Any]] = {}
    for ref in list_cases(cases):
        case = load_case(ref)
        folder = output_masks(outputs, case.id)
        probs = load_mask_probabilities(folder, len(case.input))
        if probs is None:
            raise CaseError(f"{folder}: missing; run genprop-eval --model ... on these cases first")
        if probs.shape != case.edit_mask.shape:
            raise CaseError(
                f"{folder}: masks of shape {probs.shape}, expected {case.edit_mask.shape}"
            )
        metric, target = mpd_target(case)
        entry = scores.setdefault(case.task, {"metric": metric, "per_case": []})
        entry["per_case"].append([region_j(probs[1:] >= t, target[1:]) for t in grid])
    if not scores:
        raise CaseError(f"{cases}: no cases")
    return {
        task: {
            "metric": e["metric"],
            "cases": len(e["per_case"]),
            "values": dict(zip(grid, np.nanmean(np.array(e["per_case"]), axis=0).tolist())),
        }
        for task, e in scores.items()
    }


def pick(table: dict[str, Any]) -> dict[str, float]:
    """Per task: the threshold with the highest mean J (ties: the nearest 0.5)."""
    best: dict[str, float] = {}
    for task, e in table.items():
        values = {t: v for t, v in e["values"].items() if not math.isnan(v)}
        if values:
            top = max(values.values())
            best[task] = min((t for t, v in values.items() if v == top), key=_nearest_half)
    return best


def _nearest_half(threshold: float) -> float:
    """Tie-break key: a threshold nearer 0.5 departs less from the plain reading of a mask."""
    return abs(threshold - 0.5)


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the table and the choice; write ``--out`` when given."""
    p = argparse.ArgumentParser(prog="python -m evaluation.mask_threshold", description=__doc__)
    p.add_argument("--cases", type=Path, required=True, help="validation case folder")
    p.add_argument("--outputs", type=Path, required=True, help="genprop-eval's OUT/genprop")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the choice")
    args = p.parse_args(argv)
    try:
        table = sweep(args.cases, args.outputs)
    except CaseError as e:
        raise SystemExit(f"python -m evaluation.mask_threshold: error: {e}") from None
    best = pick(table)
    spec = per_task_spec(best, tie=_nearest_half)
    default = most_common(best, tie=_nearest_half)
    print("| task | metric | cases | " + " | ".join(f"{t:g}" for t in GRID) + " | best |")
    print("|---|---|---|" + "---|" * (len(GRID) + 1))
    for task, e in table.items():
        cells = " | ".join(f"{v:.3f}" for v in e["values"].values())
        print(f"| {task} | {e['metric']} | {e['cases']} | {cells} | {best.get(task, math.nan):g} |")
    per_task = {t: v for t, v in best.items() if v != default}
    print(f"\ngenprop-eval --mask-threshold {spec}")
    named = ", ".join(f"{t}: {v:g}" for t, v in per_task.items())
    print(f"sampling: {{mask_threshold: {default:g}, task_mask_threshold: {{{named}}}}}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "spec": spec,
            "mask_threshold": default,
            "task_mask_threshold": per_task,
            "per_task": {
                t: {**e, "values": {f"{k:g}": v for k, v in e["values"].items()}}
                for t, e in table.items()
            },
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
