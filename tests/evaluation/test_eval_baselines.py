"""Each baseline on a tiny synthetic case behaves as documented."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_cases import STEP, render

from evaluation.baselines import (
    NotApplicableError,
    first_frame_edit_region,
    flow_propagation,
    frame0_coordinates,
    identity,
    mask_inpaint,
    paste_first_frame,
    run_baseline,
)


def _recolor_case(T: int = 5):
    w = render(T)
    return w, w.with_object, w.recolored[0]


def test_identity_equals_input() -> None:
    _, video, first = _recolor_case()
    np.testing.assert_array_equal(identity(video, first), video)


def test_paste_first_frame_pastes_the_edit_region_everywhere() -> None:
    w, video, first = _recolor_case()
    region = first_frame_edit_region(video[0], first)
    np.testing.assert_array_equal(region, w.object_mask[0])
    out = paste_first_frame(video, first)
    for t in range(len(video)):
        np.testing.assert_array_equal(out[t][region], first[region])
        np.testing.assert_array_equal(out[t][~region], video[t][~region])


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _changed(out: np.ndarray, video: np.ndarray) -> np.ndarray:
    return np.abs(out.astype(int) - video).max(-1) > 40


def test_flow_propagation_moves_the_edit_with_the_square() -> None:
    w, video, first = _recolor_case(T=5)
    assert np.allclose(frame0_coordinates(video)[0, 3, 5], (5, 3))
    out = flow_propagation(video, first)
    start = _centroid(w.object_mask[0])
    moved = []
    for t in range(1, len(video)):
        painted = _changed(out[t], video[t])
        # the edit covers the square where it is now...
        assert (painted & w.object_mask[t]).sum() > 0.8 * w.object_mask[t].sum()
        moved.append(_centroid(painted)[0] - start[0])
    # ...and follows it: the edited region's centre advances every frame (by less than the
    # motion: flow is smoothed across the square's edge, so a thin trail stays behind)
    assert np.all(np.diff(moved) > 0.25 * STEP)
    assert moved[-1] > 0.4 * STEP * (len(video) - 1)
    # paste_first_frame, for contrast, leaves the edit where it was on frame 0
    pasted = paste_first_frame(video, first)
    assert _centroid(_changed(pasted[-1], video[-1])) == pytest.approx(start, abs=0.75)


def test_flow_propagation_direct_mode_follows_one_step() -> None:
    # one flow t -> 0 is only reliable for small displacements at 32x32 (shallow pyramid)
    w, video, first = _recolor_case(T=2)
    painted = _changed(flow_propagation(video, first, mode="direct")[1], video[1])
    assert _centroid(painted)[0] - _centroid(w.object_mask[0])[0] > 0.5 * STEP


def test_mask_inpaint_changes_only_object_pixels_and_removes_the_object() -> None:
    w = render(T=4)
    video, first = w.with_object, w.plate[0]
    out = mask_inpaint(video, first, w.object_mask, "removal")
    np.testing.assert_array_equal(out[0], first)
    for t in range(1, len(video)):
        np.testing.assert_array_equal(out[t][~w.object_mask[t]], video[t][~w.object_mask[t]])
        assert not np.any(np.all(out[t][w.object_mask[t]] == video[t][w.object_mask[t]][0], -1))


def test_mask_inpaint_not_applicable_to_insertion_and_unknown_name() -> None:
    w = render(T=2)
    with pytest.raises(NotApplicableError):
        run_baseline(
            "mask_inpaint",
            video=w.plate,
            first=w.with_object[0],
            object_mask=w.object_mask,
            task="insertion",
        )
    with pytest.raises(ValueError, match="valid: identity"):
        run_baseline(
            "nope", video=w.plate, first=w.plate[0], object_mask=w.object_mask, task="removal"
        )
