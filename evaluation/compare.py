"""Two or more GenProp models side by side on the same cases: headline metrics and per-case wins.

```
python -m evaluation.compare --run latent=DIR --run pixel=DIR [--run NAME=DIR ...] --out OUT
```
Each ``DIR`` is a ``genprop-eval`` report folder (``metrics.json``) of GenProp on the same cases
(``make demo-compare``: the demo's model and the pixel-space model on validation cases, with and
without preservation). For every task the headline metric (inside the edit, or tracking's J) and
the background (PSNR_m) are tabulated per run, with the number of cases on which the first run is
ahead of each other one. Baselines scored in any of the folders are added as reference columns.
Writes ``compare.json`` and ``compare.md`` under ``OUT`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from contracts.jsonfile import read_json_object
from evaluation.targets import BACKGROUND_TASKS, HEADLINE_METRICS, average

METHOD = "genprop"
# (task, metric) rows: every headline number, then the background of each task not yet listed.
ROWS: tuple[tuple[str, str], ...] = HEADLINE_METRICS + tuple(
    (task, "PSNR_m") for task in BACKGROUND_TASKS if (task, "PSNR_m") not in HEADLINE_METRICS
)
REFERENCE_BASELINES = ("flow_propagation", "mask_inpaint", "identity")
K = TypeVar("K", bound=Hashable)


def parse_run(spec: str) -> tuple[str, Path]:
    """``"NAME=DIR"`` -> (NAME, DIR); raises ValueError naming what is wrong."""
    name, sep, folder = spec.partition("=")
    if not sep or not name or not folder:
        raise ValueError(f"--run {spec!r}: expected NAME=DIR, e.g. latent=outputs/demo/eval")
    return name, Path(folder)


def read_runs(specs: list[str], parse: Callable[[str], tuple[K, Path]]) -> dict[K, dict[str, Any]]:
    """``--run`` specs -> {key: that folder's genprop-eval metrics.json}, in order.

    ``parse`` turns a spec into (key, folder) (:func:`parse_run` here, the scale parser of
    :mod:`evaluation.curve`). Raises ValueError, one line, for a bad spec, a key given twice or
    a folder without a report.
    """
    runs: dict[K, dict[str, Any]] = {}
    for spec in specs:
        key, folder = parse(spec)
        if key in runs:
            raise ValueError(f"--run {spec!r}: {key} is given twice")
        metrics_file = folder / "metrics.json"
        if not metrics_file.is_file():
            raise ValueError(f"{metrics_file}: missing; run genprop-eval --out {folder} first")
        runs[key] = read_json_object(metrics_file, what="genprop-eval report")
    return runs


def wins(a: dict[str, Any], b: dict[str, Any], task: str, metric: str) -> tuple[int, int]:
    """``(k, n)``: run ``a``'s GenProp is ahead of run ``b``'s on k of the n cases of ``task``
    both scored (equal exact copies, 100 dB, count as ahead)."""
    pa = a.get("per_case", {}).get(METHOD, {})
    pb = b.get("per_case", {}).get(METHOD, {})
    ids = [
        i
        for i, t in a.get("case_tasks", {}).items()
        if t == task and metric in pa.get(i, {}) and metric in pb.get(i, {})
    ]
    k = sum(
        float(pa[i][metric]) > float(pb[i][metric])
        or float(pa[i][metric]) == float(pb[i][metric]) >= 100.0
        for i in ids
    )
    return k, len(ids)


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The comparison as plain JSON: one row per (task, metric) any run measured."""
    names = list(runs)
    first = names[0]
    rows = []
    for task, metric in ROWS:
        values = {n: average(m, task, METHOD, metric) for n, m in runs.items()}
        if not any(math.isfinite(v) for v in values.values()):
            continue
        refs = {}
        for baseline in REFERENCE_BASELINES:
            v = next(
                (
                    average(m, task, baseline, metric)
                    for m in runs.values()
                    if math.isfinite(average(m, task, baseline, metric))
                ),
                math.nan,
            )
            if math.isfinite(v):
                refs[baseline] = v
        ahead = {n: wins(runs[first], runs[n], task, metric) for n in names[1:]}
        rows.append(
            {"task": task, "metric": metric, "values": values, "baselines": refs, "ahead": ahead}
        )
    return {"runs": names, "rows": rows}


def _fmt(v: float, metric: str) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.3f}" if "J_" in metric else f"{v:.2f}"


def to_markdown(result: dict[str, Any]) -> str:
    """The comparison table: runs, then reference baselines, then the first run's case wins."""
    names = result["runs"]
    refs = [b for b in REFERENCE_BASELINES if any(b in r["baselines"] for r in result["rows"])]
    head = ["task", "metric", *names, *refs]
    head += [f"{names[0]} ahead of {n} (cases)" for n in names[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        m = r["metric"]
        cells = [r["task"], m, *(_fmt(r["values"][n], m) for n in names)]
        cells += [_fmt(r["baselines"].get(b, math.nan), m) for b in refs]
        cells += [f"{r['ahead'][n][0]} of {r['ahead'][n][1]}" for n in names[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point: write compare.{json,md} under ``--out`` and print the table."""
    p = argparse.ArgumentParser(prog="python -m evaluation.compare", description=__doc__)
    p.add_argument("--run", action="append", required=True, help="NAME=EVAL_DIR (repeat, >= 2)")
    p.add_argument("--out", type=Path, required=True, help="folder for compare.{json,md}")
    args = p.parse_args(argv)
    try:
        runs = read_runs(args.run, parse_run)
    except ValueError as err:
        p.error(str(err))
    if len(runs) < 2:
        p.error("--run: give at least two runs to compare")
    result = compare(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    table = to_markdown(result)
    (args.out / "compare.md").write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
