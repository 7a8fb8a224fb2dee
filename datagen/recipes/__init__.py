"""Training-pair recipes (docs/ARCHITECTURE.md §1): one module per recipe, one call per sample.

``build_recipes(cfg)`` maps each task to its configured recipe:
removal → copy_paste, edit → mask_fill (mean), insertion → mask_fill (Telea),
tracking → color_fill, outpainting → border_fill.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datagen.recipes.base import Recipe, RecipeOutput
from datagen.recipes.border_fill import BorderFill
from datagen.recipes.color_fill import ColorFill
from datagen.recipes.copy_paste import CopyPaste
from datagen.recipes.mask_fill import MaskFill
from datagen.record import SkipSample

__all__ = [
    "BorderFill",
    "ColorFill",
    "CopyPaste",
    "MaskFill",
    "Recipe",
    "RecipeOutput",
    "SkipSample",
    "build_recipes",
]


def build_recipes(cfg: Mapping[str, Any]) -> dict[str, Recipe]:
    """Task -> recipe from the ``recipes`` config group (plain dict of keyword arguments).

    Args:
        cfg: ``{"copy_paste": {...}, "mean_fill": {...}, "telea_fill": {...},
            "color_fill": {...}, "border_fill": {...}}``; missing groups use the paper defaults.
    """

    def kw(name: str) -> dict[str, Any]:
        items = dict(cfg.get(name) or {}).items()
        return {k: tuple(v) if isinstance(v, list) else v for k, v in items}

    return {
        "removal": CopyPaste(**kw("copy_paste")),
        "edit": MaskFill(fill="mean", **kw("mean_fill")),
        "insertion": MaskFill(fill="telea", **kw("telea_fill")),
        "tracking": ColorFill(**kw("color_fill")),
        "outpainting": BorderFill(**kw("border_fill")),
    }
