"""Quality vs training compute: one ``genprop-eval`` report per compute scale -> table and plot.

```
python -m evaluation.curve --run 0.5=DEMO/curve/x0.5/eval --run 1=DEMO/eval ... --out DEMO/curve
```
``SCALE`` multiplies both training stages' steps of the demo (``make demo-curve`` trains and
evaluates each scale on the same benchmark cases). Writes ``curve.json`` (``{"scales": [...],
"rows": [{"task", "metric", "values": {scale: value}}]}``), ``curve.md`` (one row per headline
metric, one column per scale) and ``curve.png`` (one panel per row, value vs scale, log₂ axis).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from evaluation.compare import read_runs
from evaluation.targets import HEADLINE_METRICS, average

METHOD = "genprop"


def parse_run(spec: str) -> tuple[float, Path]:
    """``"SCALE=DIR"`` -> (scale, DIR); raises ValueError naming what is wrong."""
    scale, sep, folder = spec.partition("=")
    try:
        value = float(scale)
    except ValueError:
        value = math.nan
    if not sep or not folder or not math.isfinite(value) or value <= 0:
        raise ValueError(f"--run {spec!r}: expected SCALE=DIR with a positive SCALE, e.g. 0.5=DIR")
    return value, Path(folder)


def curve_rows(runs: dict[float, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per headline (task, metric) measured by at least one run: its value per scale."""
    rows = []
    for task, metric in HEADLINE_METRICS:
        values = {s: average(m, task, METHOD, metric) for s, m in sorted(runs.items())}
        if any(math.isfinite(v) for v in values.values()):
            rows.append({"task": task, "metric": metric, "values": values})
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """One small panel per row: value vs compute scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 2.4), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        scales = sorted(row["values"])
        ax.plot(scales, [row["values"][s] for s in scales], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xticks(scales, [f"{s:g}×" for s in scales], fontsize=7)
        ax.set_title(f"{row['task']}: {row['metric']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point: write curve.{json,md,png} under ``--out`` and print the table."""
    p = argparse.ArgumentParser(prog="python -m evaluation.curve", description=__doc__)
    p.add_argument("--run", action="append", required=True, help="SCALE=EVAL_DIR (repeat)")
    p.add_argument("--out", type=Path, required=True, help="folder for curve.{json,md,png}")
    args = p.parse_args(argv)
    try:
        runs = read_runs(args.run, parse_run)
    except ValueError as err:
        p.error(str(err))
    rows = curve_rows(runs)
    if not rows:
        p.error("no run has a GenProp metric of the curve (genprop-eval with --model?)")
    scales = sorted(runs)
    lines = ["| task | metric | " + " | ".join(f"{s:g}×" for s in scales) + " |"]
    lines.append("|---|---|" + "---|" * len(scales))
    for row in rows:
        cells = [f"{row['values'][s]:.3f}".replace("nan", "–") for s in scales]
        lines.append(f"| {row['task']} | {row['metric']} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    table = {
        "scales": scales,
        "rows": [
            {
                **r,
                "values": {
                    f"{s:g}": v if math.isfinite(v) else None for s, v in r["values"].items()
                },
            }
            for r in rows
        ],
    }
    (args.out / "curve.json").write_text(json.dumps(table, indent=2) + "\n")
    (args.out / "curve.md").write_text("\n".join(lines) + "\n")
    plot(rows, args.out / "curve.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
