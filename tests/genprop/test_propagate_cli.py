"""``genprop-propagate``: error paths (exit 2, one line naming the file) and a real tiny run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_cases import render

from genprop import GenPropModel, preset
from genprop.cli.propagate import main
from genprop.inference.video_io import read_mask_dir, read_video, write_frames_dir, write_video


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A 5-frame 32x32 removal input (frames folder and mp4), its edit and a saved tiny model."""
    w = render(T=5)
    write_frames_dir(tmp_path / "frames", w.with_object)
    write_video(tmp_path / "in.mp4", w.with_object, fps=8)
    Image.fromarray(w.plate[0]).save(tmp_path / "edit.png")
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "small.png")
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "model")
    return {
        "dir": tmp_path,
        "frames": tmp_path / "frames",
        "mp4": tmp_path / "in.mp4",
        "edit": tmp_path / "edit.png",
        "model": tmp_path / "model",
    }


def _args(p: dict[str, Path], **over: object) -> list[str]:
    opts = {
        "--model": p["model"],
        "--video": p["frames"],
        "--first-frame": p["edit"],
        "--task": "removal",
        "--out": p["dir"] / "out.mp4",
        "--steps": 2,
    } | over
    return [str(x) for kv in opts.items() for x in kv]


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_first_frame_of_another_size(inputs, capsys) -> None:
    err = _error(capsys, _args(inputs, **{"--first-frame": inputs["dir"] / "small.png"}))
    assert "small.png" in err and "24x20" in err and "resize the edit to 32x32" in err


def test_unreadable_video(inputs, capsys) -> None:
    bad = inputs["dir"] / "bad.mp4"
    bad.write_bytes(b"garbage")
    err = _error(capsys, _args(inputs, **{"--video": bad}))
    assert "bad.mp4" in err and "--video must be" in err
    assert "nowhere" in _error(capsys, _args(inputs, **{"--video": inputs["dir"] / "nowhere"}))


def test_model_folder_missing_files(inputs, capsys) -> None:
    (inputs["model"] / "model.safetensors").unlink()
    err = _error(capsys, _args(inputs))
    assert "model.safetensors" in err and "save_pretrained" in err
    assert "not found" in _error(capsys, _args(inputs, **{"--model": inputs["dir"] / "none"}))


def test_unknown_task_lists_valid_ones(inputs, capsys) -> None:
    err = _error(capsys, _args(inputs, **{"--task": "colorize"}))
    assert "colorize" in err and "removal, edit, insertion, tracking, outpainting" in err


def test_bad_output_suffix(inputs, capsys) -> None:
    assert "out.gif" in _error(capsys, _args(inputs, **{"--out": inputs["dir"] / "out.gif"}))


def test_real_run_mp4_out_with_masks(inputs) -> None:
    masks = inputs["dir"] / "masks"
    argv = _args(inputs, **{"--video": inputs["mp4"], "--masks-out": masks, "--max-frames": 5})
    assert main(argv) == 0
    out = read_video(inputs["dir"] / "out.mp4")
    assert out.frames.shape == (5, 32, 32, 3)
    assert out.fps == pytest.approx(8.0)
    assert read_mask_dir(masks).shape == (5, 32, 32)


def _mask_pngs(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(f)) for f in sorted(folder.glob("*.png"))])


def test_regions_are_the_probabilities_at_the_threshold(inputs, capsys) -> None:
    masks, regions = inputs["dir"] / "masks", inputs["dir"] / "regions"
    over = {"--masks-out": masks, "--regions-out": regions, "--mask-threshold": 0.45}
    assert main(_args(inputs, **over)) == 0
    assert "threshold 0.45" in capsys.readouterr().out
    probs, kept = _mask_pngs(masks) / 255.0, _mask_pngs(regions)
    assert set(np.unique(kept)) <= {0, 255}
    # The PNG probabilities are rounded to 1/255: compare away from the threshold.
    clear = np.abs(probs - 0.45) > 1 / 255
    assert clear.mean() > 0.5
    np.testing.assert_array_equal((kept == 255)[clear], (probs >= 0.45)[clear])


def test_regions_default_to_the_exports_threshold_for_the_task(inputs, capsys) -> None:
    model = GenPropModel.from_pretrained(inputs["model"])
    model.config.sampling.task_mask_threshold = {"removal": 0.3}
    model.save_pretrained(inputs["model"])
    argv = _args(inputs, **{"--regions-out": inputs["dir"] / "regions", "--max-frames": 3})
    assert main(argv) == 0
    assert "(threshold 0.3)" in capsys.readouterr().out
    argv = _args(inputs, **{"--regions-out": inputs["dir"] / "r2", "--task": "edit"})
    assert main([*argv, "--max-frames", "3"]) == 0
    assert "(threshold 0.5)" in capsys.readouterr().out  # edit: the export's mask_threshold


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "nan"])
def test_bad_mask_threshold_is_one_line(inputs, capsys, bad: str) -> None:
    err = _error(capsys, _args(inputs, **{"--mask-threshold": bad}))
    assert "--mask-threshold" in err and "(0, 1)" in err and bad in err


def test_real_run_frames_out_first_frame_is_the_edit(inputs) -> None:
    out_dir = inputs["dir"] / "out_frames"
    assert main(_args(inputs, **{"--out": out_dir, "--task": "tracking", "--max-frames": 3})) == 0
    frames = read_video(out_dir).frames
    assert frames.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(frames[0], np.asarray(Image.open(inputs["edit"])))


def test_console_script_exit_code(inputs) -> None:
    script = Path(sys.executable).parent / "genprop-propagate"
    if not script.is_file():
        pytest.skip(f"console script not installed at {script} (pip install -e .)")
    argv = [str(script), *_args(inputs, **{"--task": "colorize"})]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("genprop-propagate: error: unknown --task 'colorize'")
