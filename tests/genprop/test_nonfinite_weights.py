"""An export holding NaN or inf (a diverged run) is refused at load, naming the file and tensor,
instead of propagating into a black video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from genprop_helpers import one_line_error
from PIL import Image
from safetensors.torch import load_file, save_file

from genprop import GenPropModel, preset
from genprop.cli import propagate as propagate_cli
from genprop.inference.video_io import write_frames_dir


@pytest.fixture
def poisoned(tmp_path: Path) -> tuple[Path, str]:
    """A cpu_test export with one NaN in its first floating tensor, and that tensor's name."""
    folder = tmp_path / "model"
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(folder)
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(weights))
    return folder, name


def test_from_pretrained_refuses_nonfinite_weights(poisoned: tuple[Path, str]) -> None:
    folder, name = poisoned
    with pytest.raises(ValueError, match=rf"model.safetensors: tensor '{name}' holds NaN or inf"):
        GenPropModel.from_pretrained(folder)


def test_propagate_refuses_nonfinite_export_in_one_line(
    poisoned: tuple[Path, str], tmp_path: Path, capsys
) -> None:
    folder, name = poisoned
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_frames_dir(tmp_path / "frames", frames)
    Image.fromarray(frames[0]).save(tmp_path / "edit.png")
    argv = [
        "--model",
        str(folder),
        "--video",
        str(tmp_path / "frames"),
        "--first-frame",
        str(tmp_path / "edit.png"),
        "--task",
        "removal",
        "--out",
        str(tmp_path / "out"),
    ]
    err = one_line_error(capsys, propagate_cli.main, argv)
    assert f"tensor '{name}' holds NaN or inf" in err and str(folder) in err
    assert not (tmp_path / "out").exists()
