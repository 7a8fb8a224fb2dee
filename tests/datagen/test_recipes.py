"""Each recipe follows its row of docs/ARCHITECTURE.md §1 (SCE input, first frame, target, mask)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from synth_records import Box, make_record

from contracts.tasks import TRACKING_PROMPT
from datagen.clips import sample_clip
from datagen.prompts import category_prompt
from datagen.recipes import (
    BorderFill,
    ColorFill,
    CopyPaste,
    MaskFill,
    RecipeNeeds,
    RecipeOptionError,
    SkipSample,
)
from datagen.recipes.color_fill import COLOURS
from datagen.recipes.mask_fill import mean_fill


def clip_of(record, obj="1", **kw):
    kw = {"frames": 6, "size": (48, 64), "crop": "center", **kw}
    return sample_clip(record, np.random.default_rng(0), anchor_object=obj, object_ids=[obj], **kw)


def test_mean_fill_uses_unmasked_pixels_of_bbox_grown_by_5px():
    frame = np.zeros((40, 40, 3), np.uint8)
    frame[:, :, 0] = np.arange(40)[None, :] * 5
    mask = np.zeros((40, 40), bool)
    mask[10:20, 12:18] = True
    out = mean_fill(frame, mask, grow=5)
    box = frame[5:25, 7:23]
    expected = np.round(box[~mask[5:25, 7:23]].mean(0)).astype(np.uint8)
    assert (out[mask] == expected).all()
    np.testing.assert_array_equal(out[~mask], frame[~mask])


def test_edit_recipe_routes_filled_video_to_sce(record):
    clip = clip_of(record)
    out = MaskFill(fill="mean")(clip, np.random.default_rng(0))
    m = clip.masks["1"]
    np.testing.assert_array_equal(out.mask, m.astype(np.uint8))
    np.testing.assert_array_equal(out.target, clip.frames)
    np.testing.assert_array_equal(out.first, clip.frames[0])
    np.testing.assert_array_equal(out.sce[~m], clip.frames[~m])
    assert not np.array_equal(out.sce[m], clip.frames[m])
    assert out.params["grow"] == 5


def test_insertion_recipe_is_opencv_telea(record):
    clip = clip_of(record)
    out = MaskFill(fill="telea", inpaint_radius=3)(clip, np.random.default_rng(0))
    m = clip.masks["1"][2].astype(np.uint8)
    np.testing.assert_array_equal(
        out.sce[2], cv2.inpaint(clip.frames[2], m, 3.0, cv2.INPAINT_TELEA)
    )
    np.testing.assert_array_equal(out.target, clip.frames)


def test_copy_paste_pastes_partner_object_with_its_motion():
    a = clip_of(make_record("A", boxes=[Box("1", "dog", 2, 2, 8, 8)]))
    b = clip_of(make_record("B", boxes=[Box("7", "cat", 30, 20, 12, 10, vx=2.0)]), obj="7")
    out = CopyPaste(scale_range=(1.0, 1.0), translate=0.0)(a, np.random.default_rng(0), partner=b)
    mb = b.masks["7"]
    np.testing.assert_array_equal(out.mask, mb.astype(np.uint8))  # M_B, moving with B
    np.testing.assert_array_equal(out.sce[mb], b.frames[mb])  # V_aug = M_B V_B ...
    np.testing.assert_array_equal(out.sce[~mb], a.frames[~mb])  # ... + (1 - M_B) V_A
    np.testing.assert_array_equal(out.target, a.frames)
    np.testing.assert_array_equal(out.first, a.frames[0])
    assert out.object_ids == ["B/7"]
    assert not np.array_equal(out.mask[0], out.mask[-1])


def test_copy_paste_synthetic_shadow_is_part_of_the_mask():
    a = clip_of(make_record("A", boxes=[Box("1", "dog", 2, 2, 8, 8)]))
    b = clip_of(make_record("B", boxes=[Box("7", "cat", 26, 16, 12, 10)]), obj="7")
    recipe = CopyPaste(scale_range=(1.0, 1.0), translate=0.0, synthetic_effects=1.0,
                       shadow_offset=(0.5, 0.5))  # fmt: skip
    out = recipe(a, np.random.default_rng(3), partner=b)
    obj, region = b.masks["7"], out.mask.astype(bool)
    shadow = region & ~obj
    assert (region >= obj).all() and shadow.sum() > 20
    assert out.params["shadow"] is True
    assert (out.sce[shadow].astype(int) <= a.frames[shadow].astype(int)).all()
    assert out.sce[shadow].mean() < a.frames[shadow].mean() - 10
    np.testing.assert_array_equal(out.sce[~region], a.frames[~region])


def test_copy_paste_skips_partner_absent_from_first_frame():
    a = clip_of(make_record("A"))
    b = clip_of(make_record("B"), obj="2")
    b.masks["2"][0] = False
    with pytest.raises(SkipSample, match="absent from the first frame"):
        CopyPaste()(a, np.random.default_rng(0), partner=b)


def test_color_fill_red_first_frame_and_target():
    clip = clip_of(make_record())
    out = ColorFill(second_instance_prob=0.0)(clip, np.random.default_rng(0))
    m = clip.masks["1"]
    assert (out.target[m] == COLOURS["red"]).all()
    np.testing.assert_array_equal(out.target[~m], clip.frames[~m])
    np.testing.assert_array_equal(out.first, out.target[0])
    np.testing.assert_array_equal(out.sce, clip.frames)  # SCE reads the original video
    np.testing.assert_array_equal(out.mask, m.astype(np.uint8))


def test_color_fill_second_instance_in_a_palette_colour():
    clip = clip_of(make_record())
    out = ColorFill(second_instance_prob=1.0)(clip, np.random.default_rng(0))
    assert out.object_ids == ["1", "2"]
    second = out.params["colours"][1]
    assert second in ("green", "blue", "yellow", "purple", "cyan")
    m2 = clip.masks["2"] & ~clip.masks["1"]
    assert (out.target[m2] == COLOURS[second]).all()
    assert out.mask.sum() == (clip.masks["1"] | clip.masks["2"]).sum()


def test_color_fill_second_instance_rate_is_about_30_percent():
    clip = clip_of(make_record())
    recipe = ColorFill()
    n = sum(len(recipe(clip, np.random.default_rng(i)).object_ids) == 2 for i in range(400))
    assert 0.24 < n / 400 < 0.36


def test_border_fill_blanks_a_band_and_masks_it(record):
    clip = clip_of(record)
    out = BorderFill(width_range=(0.25, 0.25), max_sides=1, sides=("left",))(
        clip, np.random.default_rng(0)
    )
    band = np.zeros((48, 64), bool)
    band[:, :16] = True
    np.testing.assert_array_equal(out.mask, np.broadcast_to(band, (6, 48, 64)).astype(np.uint8))
    assert (out.sce[:, band] == 0).all()
    np.testing.assert_array_equal(out.sce[:, ~band], clip.frames[:, ~band])
    np.testing.assert_array_equal(out.target, clip.frames)
    assert out.params["bands_px"] == {"left": 16}


def test_border_fill_default_blanks_one_to_four_sides_of_their_own_widths(record):
    clip = clip_of(record)
    recipe = BorderFill()
    seen_sides, widths = set(), []
    for i in range(200):
        out = recipe(clip, np.random.default_rng(i))
        bands = out.params["bands_px"]
        seen_sides.add(len(bands))
        band = np.zeros((48, 64), bool)
        for side, px in bands.items():
            widths.append(px / (48 if side in ("top", "bottom") else 64))
            rows = {"top": np.s_[:px], "bottom": np.s_[48 - px :]}.get(side, np.s_[:])
            cols = {"left": np.s_[:px], "right": np.s_[64 - px :]}.get(side, np.s_[:])
            band[rows, cols] = True
        np.testing.assert_array_equal(out.mask[0].astype(bool), band)
    assert seen_sides == {1, 2, 3, 4}  # one side, ..., four (zoom out)
    assert min(widths) < 0.08 and max(widths) > 0.35  # narrow bands as well as wide ones


def test_recipes_skip_instance_absent_from_first_frame(record):
    clip = clip_of(record)
    clip.masks["1"][0] = False
    for recipe in (MaskFill(fill="mean"), MaskFill(fill="telea"), ColorFill()):
        with pytest.raises(SkipSample):
            recipe(clip, np.random.default_rng(0))


def test_recipes_own_their_task():
    assert (MaskFill(fill="mean").task, MaskFill(fill="telea").task) == ("edit", "insertion")
    assert MaskFill(fill="mean", task="insertion").task == "insertion"
    assert (CopyPaste().task, ColorFill().task, BorderFill().task) == (
        "removal", "tracking", "outpainting",
    )  # fmt: skip
    with pytest.raises(RecipeOptionError, match=r"^task: expected one of \('removal',\)"):
        CopyPaste(task="edit")


def test_needs_refuse_a_partner_instance_without_a_partner():
    with pytest.raises(ValueError, match="instance='partner' needs partner=True"):
        RecipeNeeds(instance="partner")
    with pytest.raises(ValueError, match=r"RecipeNeeds\.instance: expected"):
        RecipeNeeds(instance="video")  # type: ignore[arg-type]


def test_prompts():
    assert category_prompt(["dog"]) == "a video of a dog"
    assert category_prompt(["elephant", "dog", "dog"]) == "a video of an elephant and a dog"
    assert category_prompt([None]) == ""
    assert ColorFill.needs.prompt == TRACKING_PROMPT == "track colored regions"
    assert category_prompt(["polar_bear"]) == "a video of a polar bear"
