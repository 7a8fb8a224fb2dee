"""Aggregate per-case scores and write ``metrics.json``, ``metrics.md`` and ``metrics.png``.

Scores come as ``per_case[method][case_id][metric] = value``. Averages are per task and method,
the mean over that task's cases ignoring NaN (undefined values, e.g. an empty region); ``n`` is the
number of cases scored. Methods that are not applicable to a task (``mask_inpaint`` on insertion)
are listed as N/A.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.scoring import HIGHER_IS_BETTER

METRIC_ORDER = (
    "PSNR", "SSIM", "PSNR_m", "PSNR_edit", "SSIM_edit", "E_warp", "Seams",
    "J_obj", "F_obj", "J_obj+fx", "F_obj+fx",
    "MPD_J_obj", "MPD_F_obj", "MPD_J_obj+fx", "MPD_F_obj+fx", "MPD_J_edit", "MPD_F_edit",
    "CLIP_T", "CLIP_I",
)  # fmt: skip
PLOT_METRICS = ("PSNR_edit", "PSNR_m", "SSIM_edit", "J_obj", "J_obj+fx", "E_warp")
FRAMES_NOTE = (
    "Per-frame metrics use frames 1..T-1 (frame 0 is the given edited first frame); E_warp uses "
    "every consecutive pair of the output. PSNR of an exact match is capped at 100 dB."
)

Scores = dict[str, dict[str, dict[str, float]]]


def aggregate(
    per_case: Scores, case_tasks: dict[str, str]
) -> dict[str, dict[str, dict[str, float]]]:
    """``averages[task][method][metric]`` (nan-mean over cases) plus ``n`` (cases scored)."""
    averages: dict[str, dict[str, dict[str, float]]] = {}
    for method, cases in per_case.items():
        by_task: dict[str, list[dict[str, float]]] = {}
        for case_id, scores in cases.items():
            by_task.setdefault(case_tasks[case_id], []).append(scores)
        for task, rows in by_task.items():
            names = sorted({k for r in rows for k in r}, key=_metric_key)
            avg = {}
            for name in names:
                vals = np.array([r.get(name, math.nan) for r in rows], np.float64)
                avg[name] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
            avg["n"] = float(len(rows))
            averages.setdefault(task, {})[method] = avg
    return averages


def _metric_key(name: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN
    return x


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.4f}" if abs(v) < 0.01 else f"{v:.3f}"


def markdown_tables(
    averages: dict[str, dict[str, dict[str, float]]],
    not_applicable: dict[str, list[str]],
    method_order: list[str] | None = None,
) -> str:
    """One markdown table per task: methods as rows (in ``method_order`` when given, N/A rows
    for methods not applicable to the task), metrics as columns."""
    lines = [
        "# GenProp evaluation",
        "",
        FRAMES_NOTE,
        " and ".join(k for k, up in HIGHER_IS_BETTER.items() if not up)
        + ": lower is better; all others higher.",
        "",
    ]
    for task in sorted(averages):
        methods = averages[task]
        names = sorted({k for m in methods.values() for k in m if k != "n"}, key=_metric_key)
        lines += [
            f"## {task}",
            "",
            "| method | n | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for method in method_order or [*methods, *not_applicable.get(task, [])]:
            if method in methods:
                cells = [_fmt(methods[method].get(n)) for n in names]
                lines.append(
                    f"| {method} | {int(methods[method]['n'])} | " + " | ".join(cells) + " |"
                )
            elif method in not_applicable.get(task, []):
                lines.append(f"| {method} | 0 | " + " | ".join(["N/A"] * len(names)) + " |")
        lines.append("")
    return "\n".join(lines)


def bar_chart(averages: dict[str, dict[str, dict[str, float]]], path: Path) -> Path:
    """Grouped bars: one row of panels per task, one panel per key metric, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(averages)
    all_methods = list(dict.fromkeys(m for t in tasks for m in averages[t]))
    colors = {m: f"C{i % 10}" for i, m in enumerate(all_methods)}  # same colour in every panel
    panels = {
        t: [m for m in PLOT_METRICS if any(m in a for a in averages[t].values())] for t in tasks
    }
    ncols = max([len(p) for p in panels.values()] + [1])
    fig, axes = plt.subplots(
        len(tasks) or 1, ncols, figsize=(3.2 * ncols, 2.6 * max(len(tasks), 1)), squeeze=False
    )
    for row, task in enumerate(tasks):
        methods = list(averages[task])
        for col in range(ncols):
            ax = axes[row][col]
            if col >= len(panels[task]):
                ax.axis("off")
                continue
            metric = panels[task][col]
            vals = [averages[task][m].get(metric, math.nan) for m in methods]
            ax.bar(range(len(methods)), np.nan_to_num(vals), color=[colors[m] for m in methods])
            ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=7)
            ax.set_title(f"{task}: {metric}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    out_dir: str | Path,
    per_case: Scores,
    case_tasks: dict[str, str],
    *,
    not_applicable: dict[str, list[str]] | None = None,
    errors: list[str] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.md`` and ``metrics.png`` under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    not_applicable = not_applicable or {}
    averages = aggregate(per_case, case_tasks)
    payload = {
        "version": 1,
        "frames": FRAMES_NOTE,
        "case_tasks": case_tasks,
        "averages": averages,
        "per_case": per_case,
        "not_applicable": not_applicable,
        "errors": errors or [],
        "notes": notes or [],
    }
    paths = {
        "json": out_dir / "metrics.json",
        "md": out_dir / "metrics.md",
        "png": out_dir / "metrics.png",
    }
    paths["json"].write_text(json.dumps(_jsonable(payload), indent=2, allow_nan=False))
    md = markdown_tables(averages, not_applicable, list(per_case))
    if notes or errors:
        md += (
            "\n## Notes\n\n" + "\n".join(f"- {n}" for n in [*(notes or []), *(errors or [])]) + "\n"
        )
    paths["md"].write_text(md)
    bar_chart(averages, paths["png"])
    return paths
