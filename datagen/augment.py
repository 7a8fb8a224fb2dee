"""Clip augmentation: the ONLY module that imports albumentations (2.0.8, the last MIT release).

One set of random parameters is drawn per clip and applied to every frame and every mask
(albumentations 2's ``images``/``masks`` targets), so motion and masks stay consistent. Draws
come from a seed taken from the sample's generator, so augmentation is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import numpy as np

from datagen.record import Clip


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Augmentation knobs (``augment.*`` in conf).

    Attributes:
        enabled: apply augmentation at all.
        hflip_p: probability of a horizontal flip.
        color_p: probability of a brightness/contrast/saturation/hue jitter.
        brightness, contrast, saturation, hue: ColorJitter ranges.
        affine_p: probability of a small affine (scale/rotate/translate) of the whole clip.
        scale, rotate, translate: affine ranges (scale factor delta, degrees, fraction of size).
    """

    enabled: bool = True
    hflip_p: float = 0.5
    color_p: float = 0.3
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    affine_p: float = 0.0
    scale: float = 0.1
    rotate: float = 5.0
    translate: float = 0.05


class ClipAugment:
    """Applies the same albumentations transform to every frame and mask of a clip."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg
        self.transform = A.Compose(
            [
                A.HorizontalFlip(p=cfg.hflip_p),
                A.Affine(
                    scale=(1 - cfg.scale, 1 + cfg.scale),
                    rotate=(-cfg.rotate, cfg.rotate),
                    translate_percent=(-cfg.translate, cfg.translate),
                    border_mode=0,
                    p=cfg.affine_p,
                ),
                A.ColorJitter(
                    brightness=cfg.brightness,
                    contrast=cfg.contrast,
                    saturation=cfg.saturation,
                    hue=cfg.hue,
                    p=cfg.color_p,
                ),
            ],
            seed=0,
        )

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        """Return a new clip with augmented ``(T, H, W, 3)`` frames and ``(T, H, W)`` masks."""
        if not self.cfg.enabled:
            return clip
        self.transform.set_random_seed(int(rng.integers(2**31)))
        ids = list(clip.masks)
        T = clip.frames.shape[0]
        stacked = np.concatenate([clip.masks[i] for i in ids]).astype(np.uint8) if ids else None
        kwargs = {"images": clip.frames}
        if stacked is not None:
            kwargs["masks"] = stacked
        out = self.transform(**kwargs)
        masks = {}
        for k, i in enumerate(ids):
            masks[i] = np.asarray(out["masks"][k * T : (k + 1) * T]) > 0
        return Clip(
            video_id=clip.video_id,
            source=clip.source,
            frames=np.ascontiguousarray(out["images"], dtype=np.uint8),
            masks=masks,
            categories=clip.categories,
            frame_indices=clip.frame_indices,
            fps=clip.fps,
            object_ids=clip.object_ids,
        )
