"""Fixtures of the genprop-app tests: a tiny export, a toy video and its edit, toy cases.

``tests/genprop`` holds ``synthetic_cases`` (the 32x32 moving-square world); put it on
``sys.path`` so these tests import it when run on their own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "genprop"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app_helpers import EXPORT_STEPS, ToyInputs
from synthetic_cases import render, write_cases

from genprop import GenPropModel, preset
from genprop.inference.video_io import write_video


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved cpu_test model (seed 0) whose config asks for 3 sampling steps."""
    torch.manual_seed(0)
    model = GenPropModel.from_config(preset("cpu_test"))
    model.config.sampling.steps = EXPORT_STEPS
    folder = tmp_path_factory.mktemp("export") / "model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_export: Path) -> GenPropModel:
    """The tiny export, loaded (shared by the tests: they only run it)."""
    return GenPropModel.from_pretrained(tiny_export).eval()


@pytest.fixture(scope="session")
def toy(tmp_path_factory: pytest.TempPathFactory) -> ToyInputs:
    """The moving square (5 frames, 8 fps) and its removal edit (the clean plate's frame 0)."""
    root = tmp_path_factory.mktemp("toy")
    w = render(T=5)
    write_video(root / "in.mp4", w.with_object, fps=8)
    Image.fromarray(w.plate[0]).save(root / "edit.png")
    return ToyInputs(w.with_object, w.plate[0], root / "in.mp4", root / "edit.png")


@pytest.fixture(scope="session")
def toy_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A benchmark-layout case folder with a removal and a tracking case."""
    return write_cases(tmp_path_factory.mktemp("cases"))
