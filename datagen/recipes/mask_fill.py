"""Mask-and-fill (paper supp. S1): the instance is erased from every frame of the SCE input.

Two fills, one per task:

- ``edit``: background-mean fill. The mask's bounding box is grown by ``grow`` px (paper: 5) and
  the mean colour of the *unmasked* pixels inside it replaces the masked pixels.
- ``insertion``: OpenCV Telea inpainting (``cv2.inpaint(..., cv2.INPAINT_TELEA)``).

SCE input: the filled video; G's first frame: the original ``a_1``; target: the original video;
mask: the instance masks ``M_A``.
"""

from __future__ import annotations

import cv2
import numpy as np

from datagen.recipes.base import (
    RecipeNeeds,
    RecipeOptionError,
    RecipeOutput,
    check_task,
    require_first_frame,
)
from datagen.record import Clip

# The paper's pairing of fills and tasks, the default ``task`` of a MaskFill.
TASK_OF_FILL = {"mean": "edit", "telea": "insertion"}


def mean_fill(frame: np.ndarray, mask: np.ndarray, *, grow: int) -> np.ndarray:
    """Fill ``mask`` with the mean of the unmasked pixels of its bbox grown by ``grow`` px.

    Args:
        frame: ``(H, W, 3)`` uint8.
        mask: ``(H, W)`` bool.
        grow: bbox margin in pixels.

    Returns:
        ``(H, W, 3)`` uint8 copy of ``frame``.
    """
    out = frame.copy()
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return out
    H, W = mask.shape
    y0, y1 = max(ys.min() - grow, 0), min(ys.max() + grow + 1, H)
    x0, x1 = max(xs.min() - grow, 0), min(xs.max() + grow + 1, W)
    box, box_mask = frame[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    background = box[~box_mask]
    # A mask that covers its whole grown box (touching every border) has no background inside:
    # fall back to the frame's unmasked pixels, then to mid-grey.
    if background.size == 0:
        background = frame[~mask]
    colour = background.mean(axis=0) if background.size else np.full(3, 127.5)
    out[mask] = np.round(colour).astype(np.uint8)
    return out


def telea_fill(frame: np.ndarray, mask: np.ndarray, *, radius: int) -> np.ndarray:
    """Inpaint ``mask`` with OpenCV's Telea method (``(H, W, 3)`` uint8 RGB in and out)."""
    if not mask.any():
        return frame.copy()
    return cv2.inpaint(frame, mask.astype(np.uint8), float(radius), cv2.INPAINT_TELEA)


class MaskFill:
    """The mask-and-fill recipe (``edit`` with ``fill="mean"``, ``insertion`` with ``"telea"``).

    Args:
        task: ``edit`` or ``insertion`` (both learn to bring back an erased instance from the
            first frame); default: the paper's pairing, ``edit`` for the mean fill and
            ``insertion`` for Telea.
        fill: ``"mean"`` (background-mean) or ``"telea"`` (OpenCV inpainting).
        grow: bbox margin of the mean fill in px (paper: 5).
        inpaint_radius: Telea neighbourhood radius in px.
        dilate: dilate the mask by this many px before filling (0 = the paper's exact mask); the
            dilated mask is also the sample's mask so nothing of the object leaks outside it.
    """

    name = "mask_fill"
    tasks = ("edit", "insertion")
    needs = RecipeNeeds()  # the picked instance of the clip, its area filtered

    def __init__(
        self,
        *,
        task: str | None = None,
        fill: str = "mean",
        grow: int = 5,
        inpaint_radius: int = 3,
        dilate: int = 0,
    ) -> None:
        if fill not in TASK_OF_FILL:
            raise RecipeOptionError("fill", f"expected 'mean' or 'telea', got {fill!r}")
        pixels = {"grow": grow, "inpaint_radius": inpaint_radius, "dilate": dilate}
        for option, value in pixels.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RecipeOptionError(option, f"expected an integer >= 0 (px), got {value!r}")
        self.task = check_task(TASK_OF_FILL[fill] if task is None else task, self.tasks)
        self.fill, self.grow, self.inpaint_radius, self.dilate = fill, grow, inpaint_radius, dilate

    def __call__(
        self, clip: Clip, rng: np.random.Generator, *, partner: Clip | None = None
    ) -> RecipeOutput:
        """Erase ``clip.object_ids[0]`` from every frame (``rng`` unused: the fill is exact)."""
        object_id = clip.object_ids[0]
        masks = require_first_frame(clip, object_id)
        if self.dilate > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.dilate + 1,) * 2)
            masks = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])
        if self.fill == "mean":
            filled = [mean_fill(f, m, grow=self.grow) for f, m in zip(clip.frames, masks)]
        else:
            r = self.inpaint_radius
            filled = [telea_fill(f, m, radius=r) for f, m in zip(clip.frames, masks)]
        return RecipeOutput(
            sce=np.stack(filled),
            first=clip.frames[0].copy(),
            target=clip.frames,
            mask=masks.astype(np.uint8),
            object_ids=[object_id],
            params={
                "fill": self.fill,
                "grow": self.grow,
                "inpaint_radius": self.inpaint_radius,
                "dilate": self.dilate,
            },
        )
