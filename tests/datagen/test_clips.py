"""Clip sampling: frame choice, stride, aspect-preserving resize + crop."""

from __future__ import annotations

import numpy as np
import pytest
from synth_records import Box, make_record

from datagen.clips import choose_frames, resize_cover_crop, sample_clip
from datagen.recipes import SkipSample


def test_clip_starts_where_the_anchor_object_is_present():
    rec = make_record(T=20, boxes=[Box("1", "dog", 5, 5, 10, 10, start=7, stop=20)])
    for seed in range(10):
        idx, stride = choose_frames(
            rec, np.random.default_rng(seed), frames=4, strides=(1, 2), anchor_object="1"
        )
        assert idx[0] >= 7 and stride in (1, 2)
        assert idx == [idx[0] + k * stride for k in range(4)]


def test_too_short_video_and_never_present_object_are_skipped():
    rec = make_record(T=5)
    with pytest.raises(SkipSample, match="5 annotated frames"):
        choose_frames(rec, np.random.default_rng(0), frames=8, strides=(1,), anchor_object="1")
    rec = make_record(T=12, boxes=[Box("1", "dog", 5, 5, 10, 10, start=10, stop=12)])
    with pytest.raises(SkipSample, match="no 4-frame window"):
        choose_frames(rec, np.random.default_rng(0), frames=4, strides=(1,), anchor_object="1")


def test_stride_falls_back_to_ones_that_fit():
    rec = make_record(T=8)
    _, stride = choose_frames(
        rec, np.random.default_rng(0), frames=4, strides=(1, 5), anchor_object=None
    )
    assert stride == 1


def test_sparse_annotations_restrict_starts():
    rec = make_record(T=12)
    rec = type(rec)(**{**rec.__dict__, "annotated": (4, 5, 6, 7, 8)})
    idx, _ = choose_frames(
        rec, np.random.default_rng(0), frames=5, strides=(1,), anchor_object=None
    )
    assert idx == [4, 5, 6, 7, 8]


def test_resize_cover_crop_preserves_aspect():
    img = np.zeros((100, 200), np.uint8)
    img[40:60, 90:110] = 255  # a 20x20 square in the middle
    out = resize_cover_crop(img, (50, 50), (0.5, 0.5))
    assert out.shape == (50, 50)
    ys, xs = np.nonzero(out > 127)
    assert np.ptp(ys) == np.ptp(xs)  # still square
    assert abs(ys.mean() - 24.5) < 1 and abs(xs.mean() - 24.5) < 1  # centre crop


def test_sample_clip_shapes_fps_and_masks():
    rec = make_record(T=12, H=48, W=64, fps=6.0)
    clip = sample_clip(
        rec, np.random.default_rng(1), frames=4, size=(32, 32), strides=(2,), anchor_object="1",
        object_ids=["1"],
    )  # fmt: skip
    assert clip.frames.shape == (4, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert set(clip.masks) == {"1", "2"} and clip.masks["1"].shape == (4, 32, 32)
    assert clip.fps == 3.0
    assert np.diff(clip.frame_indices).tolist() == [2, 2, 2]
    assert clip.present_in_first("1")
    only = sample_clip(rec, np.random.default_rng(1), frames=4, size=(32, 32), mask_objects=["2"])
    assert set(only.masks) == {"2"}


def test_same_rng_same_clip():
    rec = make_record()
    a = sample_clip(rec, np.random.default_rng(5), frames=4, size=(24, 24))
    b = sample_clip(rec, np.random.default_rng(5), frames=4, size=(24, 24))
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.frame_indices == b.frame_indices
