"""Colour fill (paper supp. S1), the tracking task: instances painted with a solid colour.

The SCE reads the original video ``V_A``; G's first frame is the coloured ``â_1``; the target is
the coloured video ``V̂_A`` (the one exception to "target = original"). Colour: red by default;
with probability ``second_instance_prob`` (paper: 0.3) a second instance of the same video is
painted too, in a colour drawn from the palette (green/blue/yellow/purple/cyan).
"""

from __future__ import annotations

import numpy as np

from contracts.tasks import TRACKING_PROMPT
from datagen.recipes.base import (
    RecipeNeeds,
    RecipeOptionError,
    RecipeOutput,
    check_task,
    check_unit,
    require_first_frame,
)
from datagen.record import Clip, SkipSample

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "purple": (128, 0, 255),
    "cyan": (0, 255, 255),
}


class ColorFill:
    """The colour-fill recipe.

    Args:
        task: the task its pairs train (only ``tracking``: the target is the coloured video).
        primary: colour of the first instance (paper: red).
        palette: colours for the second instance (and for the first one when
            ``random_primary_prob`` fires).
        second_instance_prob: chance to colour a second instance present in the first frame.
        random_primary_prob: chance to draw the first colour from ``palette`` instead (0 = paper).
        alpha: opacity of the paint (1.0 = solid, as in the paper).
    """

    name = "color_fill"
    tasks = ("tracking",)
    # Every instance's masks: a second instance present in the first frame may be painted too.
    # One prompt for all samples, the paper's, since the colour, not the category, says what to
    # follow.
    needs = RecipeNeeds(all_masks=True, prompt=TRACKING_PROMPT)

    def __init__(
        self,
        *,
        task: str = "tracking",
        primary: str = "red",
        palette: tuple[str, ...] = ("green", "blue", "yellow", "purple", "cyan"),
        second_instance_prob: float = 0.3,
        random_primary_prob: float = 0.0,
        alpha: float = 1.0,
    ) -> None:
        self.task = check_task(task, self.tasks)
        for option, names in (("primary", [primary]), ("palette", palette)):
            unknown = [c for c in names if c not in COLOURS]
            if unknown:
                known = sorted(COLOURS)
                raise RecipeOptionError(option, f"unknown colour {unknown[0]!r}, known: {known}")
        if not palette:
            raise RecipeOptionError("palette", "expected at least one colour, got none")
        for option, value in (
            ("second_instance_prob", second_instance_prob),
            ("random_primary_prob", random_primary_prob),
            ("alpha", alpha),
        ):
            check_unit(option, value)
        self.primary, self.palette = primary, tuple(palette)
        self.second_instance_prob = second_instance_prob
        self.random_primary_prob = random_primary_prob
        self.alpha = alpha

    def __call__(
        self, clip: Clip, rng: np.random.Generator, *, partner: Clip | None = None
    ) -> RecipeOutput:
        """Paint ``clip.object_ids[0]`` (and maybe a second instance) on every frame."""
        first_id = clip.object_ids[0]
        require_first_frame(clip, first_id)
        colour = self.primary
        if rng.random() < self.random_primary_prob:
            colour = str(rng.choice(self.palette))
        painted = [(first_id, colour)]
        others = [o for o in sorted(clip.masks) if o != first_id and clip.present_in_first(o)]
        if others and rng.random() < self.second_instance_prob:
            choices = [c for c in self.palette if c != colour] or list(self.palette)
            painted.append((str(rng.choice(others)), str(rng.choice(choices))))
        target = clip.frames.astype(np.float32)
        mask = np.zeros(clip.shape, bool)
        for object_id, name in painted:
            m = clip.masks[object_id] & ~mask  # the first painted instance wins on overlap
            target[m] = (1 - self.alpha) * target[m] + self.alpha * np.asarray(COLOURS[name])
            mask |= m
        if not mask[0].any():
            raise SkipSample("colour fill: nothing painted on the first frame")
        target_u8 = np.round(target).astype(np.uint8)
        return RecipeOutput(
            sce=clip.frames,
            first=target_u8[0].copy(),
            target=target_u8,
            mask=mask.astype(np.uint8),
            object_ids=[o for o, _ in painted],
            params={"colours": [c for _, c in painted], "alpha": self.alpha},
        )
