"""Copy-and-paste (paper supp. S1), the removal task: ``V_aug = (1 − M_B)·V_A + M_B·V_B``.

An instance of a partner video B, with its own motion, is pasted on video A (one scale and
offset for the whole clip, drawn from the jitter ranges; no harmonisation). The SCE reads
``V_aug``; G's first frame is the clean ``a_1``; the target is ``V_A``; the mask is ``M_B``.

Option beyond the paper, ``synthetic_effects``: with that probability the pasted object also
casts a synthesised shadow (its silhouette shifted, blurred and used to darken A), and the
shadow is part of the mask, so the model learns that effects go with objects.
"""

from __future__ import annotations

import cv2
import numpy as np

from datagen.recipes.base import (
    RecipeNeeds,
    RecipeOptionError,
    RecipeOutput,
    check_task,
    check_unit,
    require_first_frame,
)
from datagen.record import Clip, SkipSample


class CopyPaste:
    """The copy-and-paste recipe.

    Args:
        task: the task its pairs train (only ``removal``: the SCE sees an extra object that G's
            first frame does not have).
        scale_range: uniform range of the pasted object's scale factor (1 = as in B).
        translate: max offset of the pasted object as a fraction of the frame size.
        synthetic_effects: probability of a synthesised shadow.
        shadow_offset: uniform range of the shadow offset, as a fraction of the object height.
        shadow_blur: Gaussian sigma of the shadow edge in px.
        shadow_darkness: uniform range of the shadow's darkening (0 = none, 1 = black).
        shadow_threshold: shadow alpha above which a pixel counts as part of the mask.
    """

    name = "copy_paste"
    tasks = ("removal",)
    # Video B's instance is the one the pair is about: the builder filters its area, and again
    # after the paste, since the scale and offset may push it out of the first frame.
    needs = RecipeNeeds(partner=True, instance="partner", recheck_area=True)

    def __init__(
        self,
        *,
        task: str = "removal",
        scale_range: tuple[float, float] = (0.8, 1.2),
        translate: float = 0.2,
        synthetic_effects: float = 0.0,
        shadow_offset: tuple[float, float] = (0.05, 0.25),
        shadow_blur: float = 3.0,
        shadow_darkness: tuple[float, float] = (0.3, 0.6),
        shadow_threshold: float = 0.05,
    ) -> None:
        self.task = check_task(task, self.tasks)
        if not 0 < scale_range[0] <= scale_range[1]:
            raise RecipeOptionError("scale_range", f"expected 0 < lo <= hi, got {scale_range}")
        check_unit("synthetic_effects", synthetic_effects)
        self.scale_range, self.translate = (float(scale_range[0]), float(scale_range[1])), translate
        self.synthetic_effects, self.shadow_offset = synthetic_effects, tuple(shadow_offset)
        self.shadow_blur, self.shadow_darkness = shadow_blur, tuple(shadow_darkness)
        self.shadow_threshold = shadow_threshold

    def __call__(
        self, clip: Clip, rng: np.random.Generator, *, partner: Clip | None = None
    ) -> RecipeOutput:
        """Paste ``partner.object_ids[0]`` on ``clip``; ``partner`` must have ``clip``'s shape."""
        if partner is None:
            raise ValueError("copy_paste needs a partner clip")
        if partner.shape != clip.shape:
            raise ValueError(f"copy_paste: partner shape {partner.shape} != clip {clip.shape}")
        object_id = partner.object_ids[0]
        masks_b = require_first_frame(partner, object_id)
        _, H, W = clip.shape
        scale = float(rng.uniform(*self.scale_range))
        dx, dy = (float(v) for v in rng.uniform(-self.translate, self.translate, 2) * (W, H))
        ys, xs = np.nonzero(masks_b[0])
        cx, cy = xs.mean(), ys.mean()  # scale about the object's first-frame centroid
        affine = np.array([[scale, 0, (1 - scale) * cx + dx], [0, scale, (1 - scale) * cy + dy]])
        frames_b = np.stack([_warp(f, affine, cv2.INTER_LINEAR) for f in partner.frames])
        mask_b = np.stack([_warp(m.astype(np.uint8), affine, cv2.INTER_NEAREST) for m in masks_b])
        mask_b = mask_b > 0
        if not mask_b[0].any():
            raise SkipSample("copy_paste: pasted object left the first frame")
        background = clip.frames.astype(np.float32)
        region = mask_b.copy()
        params = {"partner_video": partner.video_id, "scale": scale, "offset_px": [dx, dy]}
        if rng.random() < self.synthetic_effects:
            alpha, shadow = self._shadow(mask_b, rng, params, object_height=int(np.ptp(ys)) + 1)
            background *= 1 - alpha[..., None]
            region |= shadow
        params["shadow"] = "darkness" in params
        paste = mask_b[..., None]
        sce = np.where(paste, frames_b, np.round(background).astype(np.uint8))
        return RecipeOutput(
            sce=sce,
            first=clip.frames[0].copy(),
            target=clip.frames,
            mask=region.astype(np.uint8),
            object_ids=[f"{partner.video_id}/{object_id}"],
            params=params,
        )

    def _shadow(
        self, mask: np.ndarray, rng: np.random.Generator, params: dict, *, object_height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shadow alpha ``(T, H, W)`` float32 and its region (bool) outside the object."""
        angle = float(rng.uniform(0, 2 * np.pi))
        length = float(rng.uniform(*self.shadow_offset)) * object_height
        darkness = float(rng.uniform(*self.shadow_darkness))
        shift = np.array([[1, 0, length * np.cos(angle)], [0, 1, length * np.sin(angle)]])
        alpha = np.stack(
            [
                cv2.GaussianBlur(
                    _warp(m.astype(np.float32), shift, cv2.INTER_LINEAR), (0, 0), self.shadow_blur
                )
                if self.shadow_blur > 0
                else _warp(m.astype(np.float32), shift, cv2.INTER_LINEAR)
                for m in mask
            ]
        )
        alpha = np.where(mask, 0.0, alpha * darkness).astype(np.float32)
        # Cut the blur's faint tail so that every darkened pixel is inside the mask.
        alpha[alpha <= self.shadow_threshold * darkness] = 0.0
        params.update(darkness=darkness, shadow_angle=angle, shadow_length_px=length)
        return alpha, alpha > 0


def _warp(img: np.ndarray, affine: np.ndarray, interpolation: int) -> np.ndarray:
    H, W = img.shape[:2]
    return cv2.warpAffine(img, affine, (W, H), flags=interpolation, borderValue=0)
