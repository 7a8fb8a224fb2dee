"""Procedural pixels of the toy world: shape outlines, object textures and the background texture.

Everything here is a pure numpy/OpenCV function of its arguments (no global random state), so a
scene renders identically everywhere.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .world import ObjectSpec, SceneSpec

# Sub-pixel precision of cv2.fillPoly vertices (2**4 = 1/16 px).
_SHIFT = 4


def unit_outline(shape: str) -> np.ndarray:
    """Vertices ``(N, 2)`` of ``shape`` with circumradius 1, centred at the origin."""

    def ring(n: int, phase: float = 0.0) -> np.ndarray:
        a = phase + np.arange(n) * 2 * math.pi / n
        return np.stack([np.cos(a), np.sin(a)], axis=1)

    if shape in ("disc", "ellipse"):
        return ring(48)
    if shape in ("square", "rectangle"):
        return ring(4, math.pi / 4)
    if shape == "triangle":
        return ring(3, -math.pi / 2)
    if shape == "diamond":
        return ring(4)
    if shape == "hexagon":
        return ring(6)
    if shape == "star":
        pts = ring(10, -math.pi / 2)
        pts[1::2] *= 0.48
        return pts
    raise ValueError(f"unknown shape {shape!r}")


def object_outline(obj: ObjectSpec, cx: float, cy: float, angle: float) -> np.ndarray:
    """Vertices ``(N, 2)`` in pixel coordinates of ``obj`` posed at ``(cx, cy, angle)``."""
    pts = unit_outline(obj.shape) * np.array([obj.radius, obj.radius * obj.aspect])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T + np.array([cx, cy])


def fill_polygon(pts: np.ndarray, height: int, width: int, offset: tuple[int, int] = (0, 0)):
    """Hard-edged (aliased, exact) polygon mask ``(height, width)`` bool.

    ``offset`` shifts the canvas origin: pixel ``(i, j)`` of the result covers image point
    ``(j - offset[0], i - offset[1])``, which lets callers rasterise on a padded canvas.
    """
    canvas = np.zeros((height, width), np.uint8)
    scaled = np.rint((pts + np.asarray(offset, float)) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [scaled], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def object_texture(
    obj: ObjectSpec, cx: float, cy: float, angle: float, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """Object colour ``(..., 3)`` float32 at image points ``(xs, ys)``; texture moves with it."""
    dx, dy = xs - cx, ys - cy
    c, s = math.cos(angle), math.sin(angle)
    u = (c * dx + s * dy) / obj.radius
    v = (-s * dx + c * dy) / (obj.radius * obj.aspect)
    c1 = np.asarray(obj.colour, np.float32)
    c2 = np.asarray(obj.colour2, np.float32)
    if obj.texture == "solid":
        w = np.zeros_like(u)
    else:
        ta = obj.texture_angle
        along = u * math.cos(ta) + v * math.sin(ta)
        if obj.texture == "stripes":
            w = (np.sin(2 * math.pi * obj.texture_freq * along) > 0).astype(np.float32)
        elif obj.texture == "checker":
            across = -u * math.sin(ta) + v * math.cos(ta)
            n = obj.texture_freq
            w = ((np.floor(along * n) + np.floor(across * n)) % 2).astype(np.float32)
        elif obj.texture == "gradient":
            w = np.clip((along + 1) / 2, 0, 1).astype(np.float32)
        else:
            raise ValueError(f"unknown texture {obj.texture!r}")
    w = w[..., None].astype(np.float32)
    return c1 * (1 - w) + c2 * w


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Value noise with feature size ``cell`` pixels, ``(height, width)`` float32 in [0, 1]."""
    gh, gw = height // cell + 3, width // cell + 3
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    fine = cv2.resize(coarse, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    crop = fine[cell : cell + height, cell : cell + width]
    lo, hi = float(crop.min()), float(crop.max())
    return (crop - lo) / max(hi - lo, 1e-6)


def background_texture(scene: SceneSpec) -> np.ndarray:
    """The whole panned-over background ``(H + 2m, W + 2m, 3)`` float32 in [0, 255].

    Smooth blobs at two scales plus soft stripes, mapped onto three muted colours; the margin ``m``
    is what the camera pan reveals over time.
    """
    m = scene.pan_margin
    h, w = scene.height + 2 * m, scene.width + 2 * m
    side = min(scene.width, scene.height)
    rng = np.random.default_rng(scene.background_seed)
    blobs = _smooth_noise(rng, h, w, max(4, side // 4))
    detail = _smooth_noise(rng, h, w, max(2, side // 14))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = scene.stripe_angle
    phase = (xx * math.cos(a) + yy * math.sin(a)) / scene.stripe_period
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * phase + rng.uniform(0, 2 * math.pi))
    field = 0.5 * blobs + 0.2 * stripes.astype(np.float32) + 0.3 * detail
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    cols = np.asarray(scene.background_colours, np.float32)
    # Piecewise-linear palette: 0 -> c0, 0.5 -> c1, 1 -> c2.
    lo = np.clip(field * 2, 0, 1)[..., None]
    hi = np.clip(field * 2 - 1, 0, 1)[..., None]
    out = cols[0] * (1 - lo) + cols[1] * lo
    out = out * (1 - hi) + cols[2] * hi
    return out.astype(np.float32)
