"""Helpers shared by the genprop-app tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPORT_STEPS = 3  # the tiny export's own sampling.steps: the page must start from it


@dataclass(frozen=True)
class ToyInputs:
    """A 5-frame 32x32 video (as an mp4 and as frames) and its removal edit (array and PNG)."""

    frames: np.ndarray
    edit: np.ndarray
    mp4: Path
    edit_png: Path
