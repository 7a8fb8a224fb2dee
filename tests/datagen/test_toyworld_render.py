"""Toy world: scene sampling and rendering (determinism, clean plates, shadows, pan, occlusion)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from datagen.toyworld import SHAPES, WorldConfig, render_video, sample_scene
from datagen.toyworld.world import object_pose

CFG = WorldConfig(width=48, height=40, num_frames=8, reflection_prob=0.5)


@pytest.fixture(scope="module")
def videos():
    return [render_video(sample_scene(CFG, 3, i)) for i in range(6)]


def test_same_seed_same_video_different_seed_differs():
    a = render_video(sample_scene(CFG, 1, 2))
    b = render_video(sample_scene(CFG, 1, 2))
    c = render_video(sample_scene(CFG, 2, 2))
    assert sample_scene(CFG, 1, 2) == sample_scene(CFG, 1, 2)
    for name in ("frames", "instance_masks", "effect_masks", "clean_plates", "background"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.frames, c.frames)
    assert sample_scene(CFG, 1, 3) != sample_scene(CFG, 1, 2)


def test_shapes_and_dtypes_non_square(videos):
    for v in videos:
        k = len(v.scene.objects)
        assert 1 <= k <= CFG.max_objects
        assert v.frames.shape == (8, 40, 48, 3) and v.frames.dtype == np.uint8
        assert v.instance_masks.shape == (k, 8, 40, 48) and v.instance_masks.dtype == bool
        assert v.clean_plates.shape == (k, 8, 40, 48, 3)
        for obj in v.scene.objects:
            assert obj.shape in SHAPES
            assert 2 * obj.radius >= 0.08 * min(CFG.width, CFG.height)


def test_clean_plate_equals_frame_outside_object_and_effects(videos):
    for v in videos:
        for k in range(len(v.object_ids)):
            outside = ~(v.instance_masks[k] | v.effect_masks[k])
            assert np.array_equal(v.clean_plates[k][outside], v.frames[outside])
            # Removing a visible object changes its pixels (objects are bright on a muted ground).
            inside = v.instance_masks[k]
            if inside.any():
                diff = np.abs(v.clean_plates[k].astype(int) - v.frames.astype(int)).sum(-1)
                assert diff[inside].mean() > 40


def test_shadow_darkens_the_ground(videos):
    """Where only k's shadow acts (no object, no reflection), the plate is brighter or equal."""
    brighter = 0
    for v in videos:
        anyone = v.instance_masks.any(axis=0)
        for k in range(len(v.object_ids)):
            shadow_only = v.effect_masks[k] & ~v.reflection_masks[k] & ~anyone
            plate = v.clean_plates[k][shadow_only].astype(int)
            frame = v.frames[shadow_only].astype(int)
            assert (plate >= frame).all()
            brighter += int((plate.sum(-1) > frame.sum(-1) + 30).sum())
    assert brighter > 100


def test_effects_are_not_part_of_instance_masks(videos):
    outside_object = sum(
        int((v.effect_masks[k] & ~v.instance_masks[k]).sum())
        for v in videos
        for k in range(len(v.object_ids))
    )
    assert outside_object > 0


def test_reflection_exists_below_the_floor():
    scene = next(s for i in range(40) if (s := sample_scene(CFG, 5, i)).floor_y is not None)
    v = render_video(scene)
    assert v.reflection_masks.any()
    rows = np.nonzero(v.reflection_masks.any(axis=(0, 1, 3)))[0]
    assert rows.min() > scene.floor_y


def test_all_removed_plate_is_the_empty_scene(videos):
    for v in videos[:3]:
        empty = render_video(replace(v.scene, objects=()))
        assert np.array_equal(v.background, empty.frames)
        anyone = v.instance_masks.any(axis=0)
        assert not np.array_equal(v.background[anyone], v.frames[anyone])


def test_camera_pan_reveals_new_background(videos):
    for v in videos[:3]:
        a = v.background[0].astype(np.float32).mean(-1)
        b = v.background[-1].astype(np.float32).mean(-1)
        assert not np.array_equal(a, b)
        (dx, dy), _ = cv2.phaseCorrelate(b, a)
        expect = np.array(v.scene.pan_velocity) * (CFG.num_frames - 1)
        assert abs(dx - expect[0]) < 1.0 and abs(dy - expect[1]) < 1.0


def test_nearer_object_occludes_farther_one():
    scene = sample_scene(CFG, 0, 0)
    base = scene.objects[0]
    near = replace(
        base,
        object_id=1,
        depth=1,
        motion="linear",
        velocity=(0.0, 0.0),
        start=(24.0, 20.0),
        radius=8.0,
        texture="solid",
    )
    far = replace(near, object_id=2, depth=0, start=(28.0, 20.0))
    v = render_video(replace(scene, objects=(near, far)))
    full_far = render_video(replace(scene, objects=(far,))).instance_masks[0]
    assert (v.instance_masks[1].sum() < full_far.sum()) and v.instance_masks[1].any()
    assert not (v.instance_masks[0] & v.instance_masks[1]).any()


def test_linear_object_leaves_the_frame():
    scene = sample_scene(CFG, 0, 0)
    obj = replace(scene.objects[0], motion="linear", start=(24.0, 20.0), velocity=(12.0, 0.0))
    v = render_video(replace(scene, objects=(obj,)))
    present = v.instance_masks[0].reshape(CFG.num_frames, -1).any(-1)
    assert present[0] and not present[-1]
    assert object_pose(obj, 7, CFG.width, CFG.height)[0] == pytest.approx(24.0 + 84.0)


def test_bounce_stays_inside():
    scene = sample_scene(CFG, 0, 0)
    obj = replace(scene.objects[0], motion="bounce", start=(20.0, 20.0), velocity=(9.0, 5.0))
    for t in range(30):
        x, y, _ = object_pose(obj, t, CFG.width, CFG.height)
        assert obj.radius - 1e-6 <= x <= CFG.width - 1 - obj.radius + 1e-6
        assert obj.radius - 1e-6 <= y <= CFG.height - 1 - obj.radius + 1e-6


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="size"):
        WorldConfig(width=4)
    with pytest.raises(ValueError, match="reflection_prob"):
        WorldConfig(reflection_prob=2.0)
