"""genprop-app first-frame edits: editor compositing, removal by inpainting, pasting, extending
the canvas, and the task each edit suggests."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.tasks import TASKS
from genprop_app.edits import (
    REMOVE_COLOUR,
    TRACK_COLOUR,
    EditError,
    compose_editor,
    extend_canvas,
    fit_edit,
    inpaint_removal,
    locate_frame,
    paste_region,
    suggest_task,
)


def _flat(colour=(90, 120, 150), size=(24, 32)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (*size, 3)).copy()


def _layer(size, box, colour, alpha=255) -> np.ndarray:
    layer = np.zeros((*size, 4), np.uint8)
    y0, y1, x0, x1 = box
    layer[y0:y1, x0:x1] = (*colour, alpha)
    return layer


def test_inpainting_removes_an_object_from_a_flat_background() -> None:
    frame = _flat()
    frame[8:16, 10:18] = (250, 30, 30)  # the object
    mask = np.zeros(frame.shape[:2], bool)
    mask[8:16, 10:18] = True
    out = inpaint_removal(frame, mask)
    err = np.abs(out[8:16, 10:18].astype(int) - (90, 120, 150)).max()
    assert err <= 5, f"the object is still visible after inpainting (max error {err})"
    assert np.array_equal(out[:4], frame[:4]), "pixels far from the mask must not change"


def test_remove_brush_is_inpainted_not_kept() -> None:
    frame = _flat()
    frame[8:16, 10:18] = (250, 30, 30)
    size = frame.shape[:2]
    value = {"background": frame, "layers": [_layer(size, (7, 17, 9, 19), REMOVE_COLOUR)]}
    edit = compose_editor(value)
    assert edit.removed.sum() == 10 * 10
    assert not edit.tracked.any()
    region = edit.frame[8:16, 10:18].astype(int)
    assert np.abs(region - (90, 120, 150)).max() <= 5, "neither the paint nor the object stays"


def test_layers_are_alpha_blended_in_order() -> None:
    frame = _flat((0, 0, 0), (8, 8))
    size = frame.shape[:2]
    value = {
        "background": np.dstack([frame, np.full(size, 255, np.uint8)]),  # RGBA background
        "layers": [
            _layer(size, (0, 4, 0, 8), (200, 100, 0)),
            _layer(size, (2, 4, 0, 8), TRACK_COLOUR, alpha=128),
            None,
        ],
    }
    edit = compose_editor(value)
    assert tuple(edit.frame[0, 0]) == (200, 100, 0)
    a = 128 / 255
    blended = np.rint(np.array([200, 100, 0]) * (1 - a) + np.array(TRACK_COLOUR) * a)
    assert tuple(edit.frame[3, 0]) == tuple(blended.astype(np.uint8))
    assert tuple(edit.frame[6, 0]) == (0, 0, 0)
    assert edit.painted[:4].all() and not edit.painted[4:].any()
    assert edit.tracked[2:4].all() and edit.tracked.sum() == 16


def test_layers_at_another_size_are_resized_to_the_frame() -> None:
    frame = _flat(size=(8, 8))
    value = {"background": frame, "layers": [_layer((16, 16), (0, 8, 0, 16), (0, 0, 255))]}
    edit = compose_editor(value)
    assert edit.frame.shape == (8, 8, 3)
    assert edit.painted[:4].all() and not edit.painted[4:].any()


def test_empty_editor_is_an_edit_error() -> None:
    with pytest.raises(EditError, match="load a video"):
        compose_editor({"background": None, "layers": []})
    with pytest.raises(EditError):
        compose_editor(None)


def test_paste_blends_a_cutout_and_clips_at_the_border() -> None:
    frame = _flat((0, 0, 0), (10, 10))
    patch = np.zeros((4, 4, 4), np.uint8)
    patch[..., :3] = 255
    patch[1:3, 1:3, 3] = 255  # an opaque 2x2 object in a transparent cut-out
    out = paste_region(frame, patch, 8, -1)
    assert out[0:2, 9].tolist() == [[255, 255, 255], [255, 255, 255]]
    assert out.sum() == 2 * 255 * 3, "only the object's visible pixels are pasted"
    with pytest.raises(EditError, match="outside"):
        paste_region(frame, patch, 20, 0)


def test_extended_canvas_pads_the_video_where_the_frame_sits() -> None:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (3, 12, 16, 3), dtype=np.uint8)
    canvas = extend_canvas(video[0], 5)
    assert canvas.shape == (22, 26, 3)
    assert locate_frame(canvas, video[0]) == (5, 5)
    padded, extended = fit_edit(video, canvas)
    assert extended and padded.shape == (3, 22, 26, 3)
    assert np.array_equal(padded[:, 5:17, 5:21], video)
    assert padded[:, :5].max() == 0 and padded[:, :, 21:].max() == 0, "the band is black"


def test_fit_edit_keeps_a_same_size_video_and_refuses_a_smaller_edit() -> None:
    video = np.zeros((2, 8, 8, 3), np.uint8)
    same, extended = fit_edit(video, np.ones((8, 8, 3), np.uint8))
    assert same is video and not extended
    with pytest.raises(EditError, match="8x8"):
        fit_edit(video, np.ones((6, 8, 3), np.uint8))
    with pytest.raises(EditError):
        extend_canvas(video[0], 0)


def test_a_flat_frame_is_located_at_the_centre() -> None:
    canvas = np.zeros((10, 10, 3), np.uint8)
    assert locate_frame(canvas, np.zeros((4, 6, 3), np.uint8)) == (3, 2)


def test_task_suggestions() -> None:
    original = _flat(size=(16, 16))
    size = original.shape[:2]

    def composed(layer):
        return compose_editor({"background": original, "layers": [layer]})

    removal = composed(_layer(size, (2, 6, 2, 6), REMOVE_COLOUR))
    tracked = composed(_layer(size, (2, 6, 2, 6), TRACK_COLOUR))
    recolour = composed(_layer(size, (2, 6, 2, 6), (0, 200, 0)))
    cases = {
        "outpainting": suggest_task(original, extend_canvas(original, 2)),
        "removal": suggest_task(original, removal.frame, composed=removal),
        "insertion": suggest_task(original, original, pasted=True),
        "tracking": suggest_task(original, tracked.frame, composed=tracked),
        "edit": suggest_task(original, recolour.frame, composed=recolour),
    }
    for task, hint in cases.items():
        assert hint.task == task, f"{task}: suggested {hint.task} ({hint.reason})"
        assert hint.task in TASKS
    uploaded = original.copy()
    uploaded[3:9, 3:9] = TRACK_COLOUR  # an edited frame made elsewhere, no strokes
    assert suggest_task(original, uploaded).task == "tracking"
    uploaded[3:9, 3:9] = (10, 10, 10)
    assert suggest_task(original, uploaded).task == "edit"
    unchanged = suggest_task(original, original)
    assert unchanged.task == "edit" and "no change" in unchanged.reason
