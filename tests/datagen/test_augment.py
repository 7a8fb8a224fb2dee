"""Augmentation applies one set of parameters to every frame and mask of a clip."""

from __future__ import annotations

import numpy as np
from synth_records import make_record

from datagen.augment import AugmentConfig, ClipAugment
from datagen.clips import sample_clip


def clip():
    return sample_clip(make_record(), np.random.default_rng(0), frames=5, size=(48, 64))


def test_flip_applies_to_every_frame_and_mask():
    c = clip()
    out = ClipAugment(AugmentConfig(hflip_p=1.0, color_p=0.0))(c, np.random.default_rng(0))
    np.testing.assert_array_equal(out.frames, c.frames[:, :, ::-1])
    for k in c.masks:
        np.testing.assert_array_equal(out.masks[k], c.masks[k][:, :, ::-1])


def test_colour_jitter_is_the_same_on_every_frame():
    c = clip()
    c.frames[:] = c.frames[0]  # a still video stays still after augmentation
    aug = ClipAugment(AugmentConfig(hflip_p=0.0, color_p=1.0, affine_p=1.0))
    out = aug(c, np.random.default_rng(3))
    assert not np.array_equal(out.frames[0], c.frames[0])
    for t in range(1, 5):
        np.testing.assert_array_equal(out.frames[t], out.frames[0])


def test_affine_moves_masks_with_frames():
    c = clip()
    aug = ClipAugment(AugmentConfig(hflip_p=0.0, color_p=0.0, affine_p=1.0, translate=0.2))
    out = aug(c, np.random.default_rng(1))
    m = out.masks["1"]
    assert m.dtype == bool and m.any()
    # the object's colour is where the transformed mask is
    inside = out.frames[m].astype(int)
    assert np.abs(inside - np.array([220, 60, 40])).mean() < 40


def test_seeded_and_disableable():
    c = clip()
    aug = ClipAugment(AugmentConfig(color_p=1.0))
    a, b = aug(c, np.random.default_rng(9)), aug(c, np.random.default_rng(9))
    np.testing.assert_array_equal(a.frames, b.frames)
    off = ClipAugment(AugmentConfig(enabled=False))(c, np.random.default_rng(9))
    assert off is c
