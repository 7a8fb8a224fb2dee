"""Border fill (ours; the paper says outpainting emerges untrained): blank a border band.

Bands on 1 to ``max_sides`` random sides, each of its own random width (fraction of that side's
axis), are set to ``fill_value`` in every SCE frame: one side extends the view, two opposite ones
widen the aspect ratio, all four zoom out. G's first frame is the original ``a_1``, the target
the original video, the mask the bands.
"""

from __future__ import annotations

import numpy as np

from datagen.recipes.base import RecipeNeeds, RecipeOptionError, RecipeOutput, check_task
from datagen.record import Clip

SIDES = ("top", "bottom", "left", "right")


class BorderFill:
    """The border-fill recipe.

    Args:
        task: the task its pairs train (only ``outpainting``).
        width_range: band width as a fraction of the frame height (top/bottom) or width
            (left/right), drawn uniformly from ``[lo, hi]``.
        max_sides: the number of blanked sides is drawn from ``1..max_sides`` (uniformly).
        sides: the sides that may be blanked.
        fill_value: grey level of the blanked band (0 = black, as the eval cases use).
    """

    name = "border_fill"
    tasks = ("outpainting",)
    # No instance: the band is the edit, so no area filter, and videos without objects serve.
    needs = RecipeNeeds(instance=None)

    def __init__(
        self,
        *,
        task: str = "outpainting",
        width_range: tuple[float, float] = (0.05, 0.4),
        max_sides: int = 4,
        sides: tuple[str, ...] = SIDES,
        fill_value: int = 0,
    ) -> None:
        self.task = check_task(task, self.tasks)
        lo, hi = width_range
        if not 0 < lo <= hi < 1:
            raise RecipeOptionError("width_range", f"expected 0 < lo <= hi < 1, got {width_range}")
        if not set(sides) <= set(SIDES) or not sides:
            raise RecipeOptionError("sides", f"expected a non-empty subset of {SIDES}, got {sides}")
        if not 1 <= max_sides <= len(sides):
            raise RecipeOptionError("max_sides", f"expected 1..{len(sides)}, got {max_sides}")
        self.width_range, self.max_sides = (float(lo), float(hi)), max_sides
        self.sides, self.fill_value = tuple(sides), fill_value

    def __call__(
        self, clip: Clip, rng: np.random.Generator, *, partner: Clip | None = None
    ) -> RecipeOutput:
        """Blank random border bands of the whole clip."""
        T, H, W = clip.shape
        n = int(rng.integers(1, self.max_sides + 1))
        chosen = [str(s) for s in rng.choice(self.sides, size=n, replace=False)]
        band = np.zeros((H, W), bool)
        widths = {}
        for side in chosen:
            frac = float(rng.uniform(*self.width_range))
            px = max(1, round(frac * (H if side in ("top", "bottom") else W)))
            widths[side] = px
            if side == "top":
                band[:px] = True
            elif side == "bottom":
                band[H - px :] = True
            elif side == "left":
                band[:, :px] = True
            else:
                band[:, W - px :] = True
        sce = clip.frames.copy()
        sce[:, band] = self.fill_value
        return RecipeOutput(
            sce=sce,
            first=clip.frames[0].copy(),
            target=clip.frames,
            mask=np.broadcast_to(band, (T, H, W)).astype(np.uint8),
            object_ids=list(clip.object_ids[:1]),
            params={"bands_px": widths, "fill_value": self.fill_value},
        )
