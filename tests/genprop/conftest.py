"""Fixtures for the genprop tests (cpu_test preset, seeded)."""

from __future__ import annotations

import pytest
from genprop_helpers import tiny_genprop_model

from genprop import GenPropModel


@pytest.fixture
def tiny_model() -> GenPropModel:
    """A cpu_test GenProp model whose backbone has random (non-zero) weights, SCE re-copied."""
    return tiny_genprop_model()
