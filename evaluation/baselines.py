"""Classical baselines for first-frame edit propagation, run by ``genprop-eval``.

Every baseline maps the original video ``(T, H, W, 3)`` uint8 and the user's edited first frame
``(H, W, 3)`` uint8 to an output video ``(T, H, W, 3)`` uint8. Like GenProp they see no per-frame
masks, except ``mask_inpaint`` which is given the ground-truth *object* masks (an oracle dense-mask
method that still knows nothing about shadows and reflections).

- ``identity``: the input video, unchanged (frame 0 included). Upper bound for the background.
- ``paste_first_frame``: the edited region of frame 0 pasted, fixed in place, on every frame.
- ``flow_propagation``: the edited region of frame 0 carried along dense optical flow of the
  *original* video (OpenCV DIS). ``mode="chained"`` (default) composes the consecutive backward
  flows t -> t-1 -> ... -> 0, which follows large motions; ``mode="direct"`` uses one flow t -> 0.
  Each output pixel inside the warped region samples the edited first frame at its frame-0 position.
- ``mask_inpaint``: per frame t >= 1, ``cv2.inpaint`` (Telea, radius 3) of the object mask. It is
  defined for ``removal`` and ``outpainting`` (where the "object" mask is the blank band); for
  ``edit``, ``insertion`` and ``tracking`` there is nothing to inpaint and it raises
  :class:`NotApplicableError`.

The edited region of frame 0 is where the edited first frame differs from the input's frame 0 by
more than :data:`EDIT_DIFF_TOLERANCE` in some channel (what a user has, no ground truth needed).
"""

from __future__ import annotations

import cv2
import numpy as np

from evaluation.metrics import backward_warp, dense_flow

BASELINES: tuple[str, ...] = ("identity", "paste_first_frame", "flow_propagation", "mask_inpaint")
EDIT_DIFF_TOLERANCE = 8  # 0..255: above JPEG/H.264 noise, below any deliberate edit
INPAINT_RADIUS = 3
MASK_INPAINT_TASKS = ("removal", "outpainting")


class NotApplicableError(ValueError):
    """The baseline is not defined for this task (reported as N/A, not as an error)."""


def first_frame_edit_region(
    input_first: np.ndarray, edited_first: np.ndarray, tolerance: int = EDIT_DIFF_TOLERANCE
) -> np.ndarray:
    """``(H, W)`` bool: where ``edited_first`` differs from ``input_first`` (both ``(H, W, 3)``)."""
    if input_first.shape != edited_first.shape:
        raise ValueError(
            f"edited first frame {edited_first.shape} and input frame 0 {input_first.shape} differ"
        )
    diff = np.abs(input_first.astype(np.int16) - edited_first.astype(np.int16)).max(-1)
    return diff > tolerance


def identity(video: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The input ``(T, H, W, 3)`` video, unchanged."""
    return video.copy()


def paste_first_frame(
    video: np.ndarray, first: np.ndarray, region: np.ndarray | None = None
) -> np.ndarray:
    """Paste ``first[region]`` on every frame; ``region`` ``(H, W)`` defaults to the edit region."""
    region = first_frame_edit_region(video[0], first) if region is None else region.astype(bool)
    out = video.copy()
    out[:, region] = first[region]
    out[0] = first
    return out


def frame0_coordinates(video: np.ndarray, mode: str = "chained") -> np.ndarray:
    """For each frame t and pixel x, the estimated position of x in frame 0.

    Args:
        video: ``(T, H, W, 3)`` uint8.
        mode: ``"chained"`` (compose consecutive flows) or ``"direct"`` (flow t -> 0).

    Returns:
        ``(T, H, W, 2)`` float32 (x, y) coordinates in frame 0; frame 0 maps to itself.
    """
    if mode not in ("chained", "direct"):
        raise ValueError(f"mode must be 'chained' or 'direct', got {mode!r}")
    T, H, W = video.shape[:3]
    grid = np.stack(np.meshgrid(np.arange(W), np.arange(H)), -1).astype(np.float32)
    coords = np.empty((T, H, W, 2), np.float32)
    coords[0] = grid
    for t in range(1, T):
        if mode == "direct":
            coords[t] = grid + dense_flow(video[t], video[0])
        else:  # video[t](x) ~ video[t-1](x + f(x)), so pos0_t(x) = pos0_{t-1}(x + f(x))
            coords[t] = backward_warp(coords[t - 1], dense_flow(video[t], video[t - 1]))
    return coords


def flow_propagation(
    video: np.ndarray, first: np.ndarray, region: np.ndarray | None = None, mode: str = "chained"
) -> np.ndarray:
    """Carry the first-frame edit along the original video's optical flow (see module docs)."""
    region = first_frame_edit_region(video[0], first) if region is None else region.astype(bool)
    coords = frame0_coordinates(video, mode)
    out = video.copy()
    out[0] = first
    region_f = region.astype(np.float32)
    for t in range(1, len(video)):
        map_x, map_y = coords[t, ..., 0], coords[t, ..., 1]
        inside = (
            cv2.remap(
                region_f,
                map_x,
                map_y,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0.0,
            )
            > 0.5
        )
        warped = cv2.remap(first, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[t][inside] = warped[inside]
    return out


def mask_inpaint(
    video: np.ndarray, first: np.ndarray, object_mask: np.ndarray, task: str
) -> np.ndarray:
    """Telea-inpaint the ``(T, H, W)`` object mask on frames t >= 1; frame 0 is ``first``."""
    if task not in MASK_INPAINT_TASKS:
        raise NotApplicableError(f"mask_inpaint is defined for {MASK_INPAINT_TASKS}, not {task!r}")
    out = video.copy()
    out[0] = first
    for t in range(1, len(video)):
        m = object_mask[t].astype(np.uint8)
        if m.any():
            out[t] = cv2.inpaint(video[t], m, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    return out


def run_baseline(
    name: str, *, video: np.ndarray, first: np.ndarray, object_mask: np.ndarray, task: str
) -> np.ndarray:
    """Run baseline ``name`` on one case; raises :class:`NotApplicableError` or ``ValueError``."""
    if name == "identity":
        return identity(video, first)
    if name == "paste_first_frame":
        return paste_first_frame(video, first)
    if name == "flow_propagation":
        return flow_propagation(video, first)
    if name == "mask_inpaint":
        return mask_inpaint(video, first, object_mask, task)
    raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}")
