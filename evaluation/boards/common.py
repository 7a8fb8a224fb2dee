"""What every real-footage benchmark of ``genprop-eval --benchmark`` shares.

- :class:`BoardError`: a user error (bad data folder, missing method output); one line naming the
  file and what was expected. ``genprop-eval`` prints it and exits 2.
- :func:`parse_methods`: ``--method NAME=DIR`` specs into ``[(NAME, DIR), ...]``.
- :func:`select_baselines`: ``--baselines`` (``all``, ``none`` or a comma list) against the
  baselines a board can run.
- :func:`method_video_dir`: a method's folder for one video, or a :class:`BoardError`.
- :class:`GenPropRun`: a loaded GenProp export with the sampling options the command line asked
  for; :meth:`GenPropRun.propagate` runs it on one video.
- :func:`prepare_run_dir`: clears GenProp outputs made with other weights or options.
- :func:`write_board_report`: ``OUT/metrics.json`` and ``OUT/metrics.md`` in the toy report's style
  (:mod:`evaluation.metrics_report`): a table of means, then one table per method with a row per
  video.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics_report import _fmt, _jsonable, _metric_key
from genprop.cli.usage import UsageError
from genprop.sampling_options import PreserveConfig

# per_video[method][video][metric] = value (NaN where undefined).
PerVideo = dict[str, dict[str, dict[str, float]]]
REPORT_VERSION = 1


class BoardError(UsageError):
    """Bad benchmark input; the message is one line naming the file and what was expected."""


def parse_methods(specs: Iterable[str], reserved: Iterable[str] = ()) -> list[tuple[str, Path]]:
    """``["NAME=DIR", ...]`` -> ``[(NAME, DIR), ...]``: names unique and not in ``reserved``
    (the names of GenProp and the baselines), every folder present."""
    reserved = set(reserved)
    methods: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise BoardError(f"--method {spec!r}: expected NAME=DIR")
        if name in reserved or name in (n for n, _ in methods):
            raise BoardError(f"--method {spec!r}: the name {name!r} is already used")
        if not Path(folder).is_dir():
            raise BoardError(f"{folder}: --method {name} folder not found")
        methods.append((name, Path(folder)))
    return methods


def select_baselines(value: str, applicable: Sequence[str]) -> list[str]:
    """``--baselines``: ``all`` (every name in ``applicable``), ``none``, or a comma list of
    names from ``applicable``."""
    if value == "all":
        return list(applicable)
    if value in ("none", ""):
        return []
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in applicable]
    if unknown:
        raise BoardError(
            f"--baselines: {', '.join(unknown)} cannot run on this benchmark; valid: "
            f"{', '.join(applicable) or 'none'}, all, none"
        )
    return names


def method_video_dir(name: str, folder: Path, video: str) -> Path:
    """``folder/video``, the output of method ``name`` for one video; a missing one is an error
    (a benchmark scores every video of its split, as the official evaluations do)."""
    path = folder / video
    if not path.is_dir():
        raise BoardError(f"{path}: --method {name} has no folder for video {video!r}")
    return path


@dataclass
class GenPropRun:
    """A loaded GenProp export and the sampling options ``genprop-eval`` was given.

    Attributes:
        model: the loaded :class:`genprop.modeling.model.GenPropModel`.
        model_dir: its export folder (for :func:`prepare_run_dir`).
        options: ``steps``, ``guidance`` (per-task map, ``*`` for the rest), ``injection_weight``,
            ``seed`` and ``preserve`` (a :class:`PreserveConfig` as a dict, or None); None values
            take the export's defaults.
        mask_thresholds: ``--mask-threshold`` per task (``*`` for the rest); empty: the export's.
    """

    model: Any
    model_dir: Path
    options: dict[str, Any]
    mask_thresholds: dict[str, float] = field(default_factory=dict)

    def guidance_for(self, task: str) -> float | None:
        """The CFG scale for ``task`` (None: the export's default)."""
        return _per_task(self.options["guidance"], task)

    def mask_threshold_for(self, task: str) -> float:
        """The MPD probability counted as the edited region for ``task``."""
        given = _per_task(self.mask_thresholds, task)
        return given if given is not None else self.model.config.sampling.mask_threshold_for(task)

    def propagate(
        self, video: np.ndarray, first: np.ndarray, task: str, *, prompt: str | None, desc: str
    ) -> Any:
        """Run GenProp on ``(T, H, W, 3)`` uint8 ``video`` from the edited ``(H, W, 3)`` first
        frame; returns :class:`genprop.inference.propagate.PropagationResult`."""
        from genprop.cli.propagate import run_propagation

        preserve = self.options["preserve"]
        return run_propagation(
            self.model,
            video,
            first,
            task,
            prompt=prompt,
            desc=desc,
            **{
                **self.options,
                "guidance": self.guidance_for(task),
                "preserve": None if preserve is None else PreserveConfig(**preserve),
            },
        )


def _per_task(values: dict[str, float], task: str) -> float | None:
    return values.get(task, values.get("*"))


def _read_run_key(run_file: Path) -> Any:
    """The recorded key of a previous run (None when the file is damaged: outputs are stale)."""
    try:
        return json.loads(run_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def prepare_run_dir(root: Path, model_dir: Path, options: dict[str, Any]) -> None:
    """Delete the PNGs under ``root`` when they were made by other model weights, another
    ``config.json`` or other sampling ``options`` (recorded in ``root/run.json``), so a later run
    recomputes them; outputs of the same run are kept and reused."""
    weights = (model_dir / "model.safetensors").stat()
    key = {
        "model": str(model_dir.resolve()),
        "size": weights.st_size,
        "mtime_ns": weights.st_mtime_ns,
        # The export's sampling defaults live in config.json: a change of them is a new run.
        "config_mtime_ns": (model_dir / "config.json").stat().st_mtime_ns,
        "options": options,
    }
    run_file = root / "run.json"
    if run_file.is_file() and _read_run_key(run_file) != key:
        for f in sorted(root.rglob("*.png"), reverse=True):
            f.unlink()
    root.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(key, indent=2))


def mean_over_videos(per_video: PerVideo) -> dict[str, dict[str, float]]:
    """``averages[method][metric]``: the NaN-ignoring mean over videos, plus ``n`` (videos)."""
    averages: dict[str, dict[str, float]] = {}
    for method, videos in per_video.items():
        names = sorted({k for scores in videos.values() for k in scores}, key=_metric_key)
        avg = {}
        for name in names:
            vals = np.array([s.get(name, math.nan) for s in videos.values()], np.float64)
            avg[name] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
        avg["n"] = float(len(videos))
        averages[method] = avg
    return averages


def _table(rows: dict[str, dict[str, float]], first: str, columns: list[str]) -> list[str]:
    lines = [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, values in rows.items():
        cells = [
            str(int(values["n"])) if c == "n" and c in values else _fmt(values.get(c))
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_board_report(
    out: str | Path,
    benchmark: str,
    per_video: PerVideo,
    *,
    averages: dict[str, dict[str, float]] | None = None,
    columns: Sequence[str] | None = None,
    mean_columns: Sequence[str] | None = None,
    frames_note: str = "",
    notes: Sequence[str] = (),
    errors: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``out/metrics.json`` and ``out/metrics.md`` for one benchmark run.

    Args:
        out: the report folder (created).
        benchmark: the benchmark's name (``davis2017``, ...), the report's title.
        per_video: ``per_video[method][video][metric]``; NaN where undefined (JSON ``null``).
        averages: ``averages[method][metric]`` as the benchmark's protocol defines its means
            (default: :func:`mean_over_videos`); an ``n`` entry is shown as a count.
        columns: the metrics of the per-video tables, in order (default: every metric, in the
            toy report's order); ``metrics.json`` always holds them all.
        mean_columns: the columns of the means table (default: ``n`` when the averages have it,
            then ``columns``).
        frames_note: which frames the metrics use (the report's first line).
        notes: lines for the report's notes (skipped metrics, thresholds, ...).
        errors: one line per video or method skipped or failed (listed with the notes).
        extra: more top-level fields for ``metrics.json`` (e.g. per-object scores).

    Returns:
        ``{"json": path, "md": path}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    averages = mean_over_videos(per_video) if averages is None else averages
    if columns is None:
        names = {k for m in per_video.values() for s in m.values() for k in s}
        columns = sorted(names, key=_metric_key)
    payload = {
        "version": REPORT_VERSION,
        "benchmark": benchmark,
        "frames": frames_note,
        "methods": list(per_video),
        "averages": averages,
        "per_video": per_video,
        **(extra or {}),
        "errors": list(errors),
        "notes": list(notes),
    }
    paths = {"json": out / "metrics.json", "md": out / "metrics.md"}
    paths["json"].write_text(json.dumps(_jsonable(payload), indent=2, allow_nan=False))
    if mean_columns is None:
        has_n = any("n" in a for a in averages.values())
        mean_columns = ["n", *columns] if has_n else list(columns)
    lines = [f"# GenProp evaluation: {benchmark}", ""]
    if frames_note:
        lines += [frames_note, ""]
    lines += ["## mean", "", *_table(averages, "method", list(mean_columns)), ""]
    for method, videos in per_video.items():
        lines += [f"## {method}: per video", "", *_table(videos, "video", list(columns)), ""]
    if notes or errors:
        lines += ["## Notes", "", *(f"- {n}" for n in [*notes, *errors]), ""]
    paths["md"].write_text("\n".join(lines))
    return paths
