"""First-frame edits made in the page: compositing the editor's layers, removal by inpainting,
pasting a region, extending the canvas, and which task an edit suggests.

Frames are ``(H, W, 3)`` uint8 RGB; editor layers are ``(H, W, 4)`` uint8 RGBA (alpha > 0 where
the user painted). Two brush colours have a meaning:

- :data:`REMOVE_COLOUR` (magenta) marks what to remove: those pixels are filled by OpenCV's
  inpainting (``cv2.inpaint``, Telea) from their surroundings, and the task is ``removal``;
- :data:`TRACK_COLOUR` (pure red) is the colour the tracking task was trained on (the toy world's
  tracking cases paint the object solid red), so strokes in it suggest ``tracking``.

Any other stroke is kept as painted and suggests ``edit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

REMOVE_COLOUR = (255, 0, 255)
TRACK_COLOUR = (255, 0, 0)
# A stroke pixel counts as a brush colour within this distance per channel: the browser's canvas
# anti-aliases stroke edges, which blends them with the frame underneath.
COLOUR_TOLERANCE = 40
INPAINT_RADIUS = 3  # pixels; the radius the evaluation's mask_inpaint baseline uses
# Pixels differing by more than this (max over RGB) between the input and an edited frame are
# the edited region.
CHANGE_THRESHOLD = 12


class EditError(ValueError):
    """An edit the app cannot use; the message says what to change."""


@dataclass(frozen=True)
class Suggestion:
    """A suggested task and the reason shown to the user."""

    task: str
    reason: str


def colour_mask(rgba: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """``(H, W)`` bool: painted pixels (alpha > 0) within :data:`COLOUR_TOLERANCE` of ``colour``."""
    diff = np.abs(rgba[..., :3].astype(np.int16) - np.array(colour, np.int16)).max(axis=-1)
    return (rgba[..., 3] > 0) & (diff <= COLOUR_TOLERANCE)


def _as_rgba(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An editor layer as ``(H, W, 4)`` uint8 at ``size`` (H, W); RGB layers are opaque."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 3:
        image = np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=-1)
    image = image.astype(np.uint8)
    if image.shape[:2] != size:  # the browser sends layers at the canvas size
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return image


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3].copy()


@dataclass(frozen=True)
class ComposedEdit:
    """The edited first frame built from the editor.

    Attributes:
        frame: ``(H, W, 3)`` uint8, the layers over the background, removals inpainted.
        painted: ``(H, W)`` bool, every painted pixel.
        removed: ``(H, W)`` bool, the pixels painted with :data:`REMOVE_COLOUR`.
        tracked: ``(H, W)`` bool, the pixels painted with :data:`TRACK_COLOUR`.
    """

    frame: np.ndarray
    painted: np.ndarray
    removed: np.ndarray
    tracked: np.ndarray


def compose_editor(value: dict | None) -> ComposedEdit:
    """Flatten a ``gr.ImageEditor`` value (``background``, ``layers``) into the edited frame.

    Layers are alpha-blended over the background in order; pixels painted with the remove brush
    are then filled by :func:`inpaint_removal` from the background (the paint is not kept).

    Raises:
        EditError: when the editor has no background image.
    """
    background = None if value is None else value.get("background")
    if background is None:
        raise EditError("the editor is empty: load a video (or a toy case) first")
    frame = _rgb(background)
    size = frame.shape[:2]
    out = frame.astype(np.float32)
    painted = np.zeros(size, bool)
    removed = np.zeros(size, bool)
    tracked = np.zeros(size, bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        rgba = _as_rgba(layer, size)
        alpha = rgba[..., 3:].astype(np.float32) / 255.0
        out = out * (1 - alpha) + rgba[..., :3].astype(np.float32) * alpha
        painted |= rgba[..., 3] > 0
        removed |= colour_mask(rgba, REMOVE_COLOUR)
        tracked |= colour_mask(rgba, TRACK_COLOUR)
    edited = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if removed.any():
        filled = inpaint_removal(frame, removed)
        edited[removed] = filled[removed]
    return ComposedEdit(frame=edited, painted=painted, removed=removed, tracked=tracked & ~removed)


def inpaint_removal(frame: np.ndarray, mask: np.ndarray, *, grow: int = 2) -> np.ndarray:
    """Fill ``mask`` of ``frame`` from its surroundings (``cv2.inpaint``, Telea).

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` bool, the object to remove.
        grow: the mask is dilated by this many pixels first, so the object's anti-aliased edge
            is not used as a source colour.

    Returns:
        ``(H, W, 3)`` uint8, ``frame`` with the (grown) mask filled.
    """
    m = mask.astype(np.uint8) * 255
    if grow > 0:
        m = cv2.dilate(m, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return cv2.inpaint(np.ascontiguousarray(frame), m, INPAINT_RADIUS, cv2.INPAINT_TELEA)


def paste_region(frame: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    """Paste ``patch`` onto ``frame`` with its top-left corner at ``(x, y)`` (insertion).

    An RGBA patch is alpha-blended (a cut-out object); an RGB patch is pasted whole. The part
    outside the frame is clipped.

    Raises:
        EditError: when no part of the patch lands on the frame.
    """
    H, W = frame.shape[:2]
    rgba = _as_rgba(patch, np.asarray(patch).shape[:2])
    ph, pw = rgba.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, W), min(y + ph, H)
    if x0 >= x1 or y0 >= y1:
        raise EditError(
            f"the pasted region ({pw}x{ph} at x={x}, y={y}) lies outside the {W}x{H} frame"
        )
    out = frame.copy()
    src = rgba[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    alpha = src[..., 3:] / 255.0
    dst = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.rint(dst * (1 - alpha) + src[..., :3] * alpha).astype(np.uint8)
    return out


def extend_canvas(frame: np.ndarray, pixels: int) -> np.ndarray:
    """The frame with ``pixels`` more on every side, filled by reflection (outpainting's start).

    The user paints over the band in the editor; the video is padded with black there
    (:func:`pad_video`), as the outpainting cases blank their band.
    """
    if pixels < 1:
        raise EditError(f"extend the canvas by at least 1 pixel, got {pixels}")
    p = int(pixels)
    return cv2.copyMakeBorder(frame, p, p, p, p, cv2.BORDER_REFLECT_101)


def locate_frame(canvas: np.ndarray, frame: np.ndarray) -> tuple[int, int]:
    """Where ``frame`` sits inside the larger ``canvas``: its top-left ``(y, x)``.

    The best match of the frame's pixels (sum of squared differences); among equally good
    positions (a flat frame), the one nearest the centre.
    """
    H, W = canvas.shape[:2]
    h, w = frame.shape[:2]
    scores = cv2.matchTemplate(canvas.astype(np.float32), frame.astype(np.float32), cv2.TM_SQDIFF)
    best = scores.min()
    ys, xs = np.nonzero(scores <= best + 1e-3 * max(best, 1.0))
    centre = np.array([(H - h) / 2, (W - w) / 2])
    k = np.argmin(np.abs(ys - centre[0]) + np.abs(xs - centre[1]))
    return int(ys[k]), int(xs[k])


def pad_video(video: np.ndarray, size: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    """``(T, H, W, 3)`` video placed at ``at`` = (y, x) on a black canvas of ``size`` (H, W)."""
    T, h, w = video.shape[:3]
    out = np.zeros((T, *size, 3), np.uint8)
    y, x = at
    out[:, y : y + h, x : x + w] = video
    return out


def fit_edit(video: np.ndarray, edited: np.ndarray) -> tuple[np.ndarray, bool]:
    """The video to propagate ``edited`` through, and whether the canvas was extended.

    Same size: the video itself. A larger edited frame (outpainting): the video padded with black
    at the position where its first frame matches the edit.

    Raises:
        EditError: when the edited frame is smaller than the video's frames in either side.
    """
    h, w = video.shape[1:3]
    H, W = edited.shape[:2]
    if (h, w) == (H, W):
        return video, False
    if h > H or w > W:
        raise EditError(
            f"the edited first frame is {W}x{H} but the video is {w}x{h}: give a frame of "
            f"{w}x{h} (or larger, to extend the canvas for outpainting)"
        )
    return pad_video(video, (H, W), locate_frame(edited, video[0])), True


def changed_region(original: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: where ``edited`` differs from ``original`` (same size) visibly."""
    diff = np.abs(original.astype(np.int16) - edited.astype(np.int16)).max(axis=-1)
    return diff > CHANGE_THRESHOLD


def suggest_task(
    original: np.ndarray,
    edited: np.ndarray,
    *,
    composed: ComposedEdit | None = None,
    pasted: bool = False,
) -> Suggestion:
    """The task an edit most likely is (a name of :data:`contracts.tasks.TASKS`).

    In order: a canvas larger than the input is ``outpainting``; remove-brush strokes are
    ``removal``; a pasted region is ``insertion``; an edited region that is mostly
    :data:`TRACK_COLOUR` is ``tracking``; any other change is ``edit``.

    Args:
        original: ``(h, w, 3)`` the video's first frame.
        edited: ``(H, W, 3)`` the edited first frame.
        composed: the editor's strokes, when the edit was made in the page.
        pasted: whether a region was pasted onto the frame.
    """
    if edited.shape[:2] != original.shape[:2]:
        if edited.shape[0] >= original.shape[0] and edited.shape[1] >= original.shape[1]:
            return Suggestion("outpainting", "the canvas is larger than the input video")
        return Suggestion("edit", "the edited frame is smaller than the video: it will be refused")
    if composed is not None and composed.removed.any():
        return Suggestion("removal", "painted with the remove brush (magenta)")
    if pasted:
        return Suggestion("insertion", "a region was pasted onto the frame")
    region = changed_region(original, edited)
    if composed is not None:
        region |= composed.painted
    if not region.any():
        return Suggestion("edit", "no change from the input's first frame yet")
    red = colour_mask(np.dstack([edited, np.full(edited.shape[:2], 255, np.uint8)]), TRACK_COLOUR)
    if (red & region).sum() >= 0.6 * region.sum():
        return Suggestion("tracking", "the edited region is painted in the tracking red")
    return Suggestion("edit", f"{int(region.sum())} pixels differ from the input's first frame")
