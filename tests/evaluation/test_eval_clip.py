"""CLIP-T / CLIP-I with a tiny random local CLIP folder (no download), and the skip path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clip_folders import write_tiny_clip
from synthetic_cases import write_cases

from evaluation.cli import main
from evaluation.clip_score import ClipScorer, ClipUnavailableError


@pytest.fixture
def tiny_clip(tmp_path: Path) -> Path:
    return write_tiny_clip(tmp_path / "clip")


def test_clip_scores(tiny_clip: Path) -> None:
    scorer = ClipScorer(tiny_clip)
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert scorer.image_similarity(frames[:1], frames[0]) == pytest.approx(1.0, abs=1e-5)
    assert scorer.image_similarity(frames, frames[0]) < 1.0
    assert -1.0 <= scorer.text_similarity(frames, "a long prompt beyond the text limit") <= 1.0


def test_missing_clip_folder_is_a_clear_skip(tmp_path: Path) -> None:
    with pytest.raises(ClipUnavailableError, match=r"config\.json"):
        ClipScorer(tmp_path)
    cases = write_cases(tmp_path / "cases", tasks=("removal",), T=3)
    out = tmp_path / "r"
    argv = ["--cases", str(cases), "--baselines", "identity", "--clip", str(tmp_path / "none")]
    assert main([*argv, "--out", str(out)]) == 0
    notes = json.loads((out / "metrics.json").read_text())["notes"]
    assert any("CLIP_T/CLIP_I skipped" in n and "none" in n for n in notes)


def test_eval_reports_clip_metrics(tiny_clip: Path, tmp_path: Path) -> None:
    cases = write_cases(tmp_path / "cases", tasks=("removal",), T=3)
    out = tmp_path / "r"
    argv = ["--cases", str(cases), "--baselines", "identity", "--clip", str(tiny_clip)]
    assert main([*argv, "--out", str(out)]) == 0
    avg = json.loads((out / "metrics.json").read_text())["averages"]["removal"]["identity"]
    assert {"CLIP_T", "CLIP_I"} <= set(avg)
