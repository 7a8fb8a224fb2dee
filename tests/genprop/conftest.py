"""Fixtures for the genprop tests (cpu_test preset, seeded)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from genprop_helpers import tiny_genprop_model

from genprop import GenPropModel
from genprop.backbones.wan.tiny import write_tiny_wan_pipeline


@pytest.fixture
def tiny_model() -> GenPropModel:
    """A cpu_test GenProp model whose backbone has random (non-zero) weights, SCE re-copied."""
    return tiny_genprop_model()


@pytest.fixture(scope="session")
def tiny_wan_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_wan_folder(variant)``: the tiny random Wan pipeline folder of ``variant`` (seed 0),
    written once per session. Read-only: copy it before editing its files."""
    folders: dict[str, Path] = {}

    def folder(variant: str) -> Path:
        if variant not in folders:
            root = tmp_path_factory.mktemp(variant)
            folders[variant] = write_tiny_wan_pipeline(root / "tiny", variant=variant)
        return folders[variant]

    return folder
