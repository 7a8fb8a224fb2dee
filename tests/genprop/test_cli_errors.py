"""User errors in genprop-propagate: one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from genprop_helpers import one_line_error
from PIL import Image

from genprop import GenPropModel, preset, propagate
from genprop.cli import propagate as propagate_cli
from genprop.inference.sampler import sample_latents
from genprop.inference.video_io import write_frames_dir


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_frames_dir(root / "frames", frames)
    Image.fromarray(frames[0]).save(root / "edit.png")
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(root / "model")
    return {"root": root, "frames": root / "frames", "edit": root / "edit.png"}


def _propagate_args(p: dict[str, Path], model: Path | None = None, *extra: str) -> list[str]:
    return [
        "--model",
        str(model or p["root"] / "model"),
        "--video",
        str(p["frames"]),
        "--first-frame",
        str(p["edit"]),
        "--task",
        "removal",
        "--out",
        str(p["root"] / "out"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("flag", "value", "expect"),
    [
        ("--steps", "0", "--steps: expected an integer"),
        ("--steps", "-3", "--steps: expected an integer"),
        ("--steps", "abc", "invalid int value"),
        ("--guidance", "nan", "--guidance: expected a finite number"),
        ("--guidance", "inf", "--guidance: expected a finite number"),
        ("--guidance", "-1", "--guidance: expected a finite number"),
        ("--injection-weight", "1.5", "--injection-weight: expected a finite number"),
        ("--injection-weight", "nan", "--injection-weight: expected a finite number"),
    ],
)
def test_propagate_bad_sampling_flags(inputs, capsys, flag: str, value: str, expect: str) -> None:
    err = one_line_error(capsys, propagate_cli.main, _propagate_args(inputs, None, flag, value))
    assert err.startswith("genprop-propagate: error:") and expect in err


@pytest.mark.parametrize(
    ("field", "value"), [("dim", float("nan")), ("dim", 0), ("patch", 0), ("depth", 10**9)]
)
def test_propagate_bad_model_config(inputs, capsys, field: str, value: object) -> None:
    bad = inputs["root"] / f"bad_{field}_{value}"
    bad.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bad / name).write_bytes((inputs["root"] / "model" / name).read_bytes())
    meta = json.loads((bad / "config.json").read_text())
    meta["backbone"][field] = value
    (bad / "config.json").write_text(json.dumps(meta))
    err = one_line_error(capsys, propagate_cli.main, _propagate_args(inputs, bad))
    assert str(bad / "config.json") in err and f"'backbone.{field}'" in err


def test_propagate_model_path_outside_folder_needs_allow_path(inputs, capsys) -> None:
    folder = inputs["root"] / "with_path"
    outside = inputs["root"] / "components"
    outside.mkdir()
    cfg = preset("cpu_test")
    cfg.text.path = str(outside)  # ignored by the hashing encoder; checked all the same
    GenPropModel.from_config(cfg).save_pretrained(folder)
    err = one_line_error(capsys, propagate_cli.main, _propagate_args(inputs, folder))
    assert "'text.path'" in err and "--allow-path" in err
    argv = _propagate_args(inputs, folder, "--steps", "1", "--allow-path", str(outside))
    assert propagate_cli.main(argv) == 0


def test_propagate_output_path_that_is_a_file(inputs, capsys) -> None:
    blocker = inputs["root"] / "blocker"
    blocker.write_text("x")
    argv = _propagate_args(inputs, None, "--steps", "1")
    argv[argv.index("--out") + 1] = str(blocker)
    err = one_line_error(capsys, propagate_cli.main, argv)
    assert "blocker" in err


def test_library_refuses_nan_guidance_instead_of_a_black_video(inputs) -> None:
    model = GenPropModel.from_pretrained(inputs["root"] / "model")
    video = np.zeros((3, 32, 32, 3), np.uint8)
    for kwargs in ({"guidance": float("nan")}, {"steps": 0}, {"injection_weight": float("inf")}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            propagate(model, video, video[0], "removal", **kwargs)
    first = model.encode_first_frame(torch.zeros(1, 3, 32, 32), 4)
    with pytest.raises(ValueError, match="guidance"):
        sample_latents(model, first, guidance=float("-inf"))
