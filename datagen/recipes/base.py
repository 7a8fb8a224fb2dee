"""What every recipe receives and returns, and the one-method recipe interface.

A recipe turns a source clip (and, for copy-and-paste, a partner clip) into one training pair
following docs/ARCHITECTURE.md §1: which video the SCE reads, which first frame G sees, the target
and the mask of the edited region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from datagen.record import Clip, SkipSample


@dataclass
class RecipeOutput:
    """One training pair before encoding (shapes as in ``contracts.schema.Sample``).

    Attributes:
        sce: ``(T, H, W, 3)`` uint8, the SCE input.
        first: ``(H, W, 3)`` uint8, G's first frame.
        target: ``(T, H, W, 3)`` uint8, the video to generate.
        mask: ``(T, H, W)`` uint8 in {0, 1}, the edited region.
        object_ids: ids of the instances the pair is about (removal: the pasted partner object,
            prefixed ``"<partner video>/"``).
        params: the recipe's random draws and settings, JSON-serialisable.
    """

    sce: np.ndarray
    first: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    object_ids: list[str]
    params: dict[str, Any]


class Recipe(Protocol):
    """A training-pair recipe: one call per sample, randomness only from ``rng``."""

    name: str

    def __call__(
        self, clip: Clip, rng: np.random.Generator, *, partner: Clip | None = None
    ) -> RecipeOutput: ...


def require_first_frame(clip: Clip, object_id: str) -> np.ndarray:
    """The object's ``(T, H, W)`` bool masks; :class:`SkipSample` when absent from frame 0."""
    if object_id not in clip.masks:
        raise SkipSample(f"object {object_id!r} not in video {clip.video_id!r}", "no_objects")
    if not clip.present_in_first(object_id):
        raise SkipSample(
            f"object {object_id!r} absent from the first frame of the clip", "object_absent"
        )
    return clip.masks[object_id]
