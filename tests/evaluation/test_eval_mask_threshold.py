"""The MPD mask threshold picked per task from saved probabilities on validation cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_cases import write_cases

from evaluation.cases import list_cases, load_case
from evaluation.cli import parse_mask_threshold, value_for
from evaluation.mask_threshold import main, mpd_target
from genprop.inference.video_io import write_mask_dir

# Per task, the probability the fake MPD gives inside its target (0 outside).
INSIDE = {"removal": 0.32, "tracking": 0.82, "insertion": 0.32}  # 8-bit PNGs: 0.322, 0.820


@pytest.fixture
def sweep_dirs(tmp_path: Path) -> tuple[Path, Path]:
    cases = write_cases(tmp_path / "cases", tasks=tuple(INSIDE), T=4)
    outputs = tmp_path / "eval" / "genprop"
    for ref in list_cases(cases):
        case = load_case(ref)
        _, target = mpd_target(case)
        probs = np.where(target, INSIDE[case.task], 0.0).astype(np.float32)
        write_mask_dir(outputs / f"{case.id}_masks", probs)
    return cases, outputs


def test_each_task_gets_the_threshold_with_its_best_mpd_j(sweep_dirs, tmp_path, capsys) -> None:
    cases, outputs = sweep_dirs
    assert (
        main(["--cases", str(cases), "--outputs", str(outputs), "--out", str(tmp_path / "b.json")])
        == 0
    )
    record = json.loads((tmp_path / "b.json").read_text())
    # J is 1 at every threshold up to the probability inside, 0 above: among the ties the one
    # nearest 0.5 wins (0.3 for removal and insertion, 0.5 itself for tracking).
    assert record["per_task"]["removal"]["values"]["0.3"] == 1.0
    assert record["per_task"]["removal"]["values"]["0.35"] == 0.0
    assert record["per_task"]["tracking"]["metric"] == "MPD_J_obj+fx"
    assert record["mask_threshold"] == 0.3
    assert record["task_mask_threshold"] == {"tracking": 0.5}
    spec = parse_mask_threshold(record["spec"])  # what genprop-eval --mask-threshold takes
    assert [value_for(spec, t) for t in ("removal", "insertion", "tracking")] == [0.3, 0.3, 0.5]
    out = capsys.readouterr().out
    assert "task_mask_threshold: {tracking: 0.5}" in out


def test_missing_masks_are_one_line_errors(sweep_dirs) -> None:
    cases, outputs = sweep_dirs
    for f in (outputs / "tracking_000_masks").glob("*.png"):
        f.unlink()
    (outputs / "tracking_000_masks").rmdir()
    with pytest.raises(SystemExit, match="tracking_000_masks: missing"):
        main(["--cases", str(cases), "--outputs", str(outputs)])
