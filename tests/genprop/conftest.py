"""Fixtures for the genprop tests (cpu_test preset, seeded)."""

from __future__ import annotations

import pytest
import torch
from genprop_helpers import perturb

from genprop import GenPropModel, preset


@pytest.fixture
def tiny_model() -> GenPropModel:
    """A cpu_test GenProp model whose backbone has random (non-zero) weights, SCE re-copied."""
    torch.manual_seed(0)
    model = GenPropModel.from_config(preset("cpu_test"))
    perturb(model.backbone, seed=1)
    model.reset_genprop_modules()
    return model
