"""``python -m evaluation.preserve_sweep``: pixel-preservation settings scored on saved outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_cases import write_cases

from evaluation.cases import list_cases, load_case
from evaluation.preserve_sweep import main, parse_variant
from genprop.inference.video_io import write_frames_dir
from genprop.sampling_options import PreserveConfig


def _noisy_outputs(cases: Path, root: Path) -> Path:
    """A method that edits perfectly but shifts every unedited pixel by +50 (below 0.3 of 255)."""
    for ref in list_cases(cases):
        case = load_case(ref)
        out = case.gt.astype(np.int16)
        out[1:][~case.edit_mask[1:]] += 50
        write_frames_dir(root / ref.id, out.clip(0, 255).astype(np.uint8))
    return root


def test_sweep_scores_the_saved_outputs_and_each_setting(tmp_path: Path) -> None:
    cases = write_cases(tmp_path / "cases", tasks=("removal", "tracking"), T=4)
    outputs = _noisy_outputs(cases, tmp_path / "eval" / "genprop")
    argv = ["--cases", str(cases), "--outputs", str(outputs), "--out", str(tmp_path / "s")]
    argv += ["--variant", "hard=source=change,threshold=0.3,dilate=0,blur=0"]
    argv += ["--variant", "low=source=change,threshold=0.1,dilate=0,blur=0"]
    assert main(argv) == 0
    avg = json.loads((tmp_path / "s" / "metrics.json").read_text())["averages"]
    for task in ("removal", "tracking"):
        assert avg[task]["off"]["PSNR_m"] < 30  # the noise, as saved
        assert avg[task]["hard"]["PSNR_m"] == 100  # below the threshold: the input, exactly
        assert avg[task]["low"]["PSNR_m"] < 30  # above it: the noise is kept as an edit


def test_variant_specs_parse_to_checked_pixel_settings() -> None:
    name, cfg = parse_variant(
        "held=source=change,link_radius=1,fixed_region_tasks=outpainting+edit"
    )
    assert name == "held"
    assert cfg == PreserveConfig(
        mode="pixel", source="change", link_radius=1, fixed_region_tasks=["outpainting", "edit"]
    )
    for bad, part in [
        ("x=threshold=abc", "threshold"),
        ("x=colour=red", "colour"),
        ("off=source=change", "NAME"),
        ("x=source=mpd,link_radius=1", "link_radius"),
    ]:
        with pytest.raises(ValueError, match=part):
            parse_variant(bad)


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    cases = write_cases(tmp_path / "cases", tasks=("removal",), T=4)
    outputs = _noisy_outputs(cases, tmp_path / "o")
    base = ["--cases", str(cases), "--outputs", str(outputs), "--out", str(tmp_path / "s")]
    assert main([*base, "--variant", "m=source=mpd"]) == 2  # no saved MPD masks to read
    err = capsys.readouterr().err
    assert "removal_000_masks: missing" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--variant", "x=threshold=2"])
    assert exit_info.value.code == 2
    assert "--variant x.threshold" in capsys.readouterr().err
