"""Fixtures of the datagen pipeline tests (helpers live in ``synth_records.py``)."""

from __future__ import annotations

import pytest
from synth_records import make_record

from datagen.record import VideoRecord


@pytest.fixture
def record() -> VideoRecord:
    """Two moving rectangles ('dog' and 'cat'), 12 frames of 48x64."""
    return make_record()
