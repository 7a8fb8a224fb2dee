"""Render toy-world videos, their instance masks, effect masks and clean plates.

A frame is built from per-object *layers* (silhouette, texture colour, shadow alpha, reflection
alpha and colour), computed once per frame and then composited for any subset of objects:

1. the background texture, cropped at the camera's pan offset (sub-pixel, bilinear), with a
   tinted floor below ``floor_y`` when the scene has one;
2. shadows: the silhouette shifted along the light direction, Gaussian-blurred and thresholded
   (multiplicative darkening, on the ground only: objects are drawn above all shadows);
3. reflections: the object mirrored about ``floor_y``, faded with distance below it;
4. objects, back to front by ``depth``, hard-edged so masks are exact.

Because an excluded object contributes exactly nothing (alpha 0 is an identity in float), the clean
plate of object ``k`` equals the full frame everywhere outside ``k``'s visible instance mask and
its effect mask (shadow ∪ reflection support) — the property the ground truth relies on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .textures import background_texture, fill_polygon, object_outline, object_texture
from .world import SceneSpec, object_pose

# Shadow alpha below this fraction of the blurred silhouette is cut to exactly 0, so the effect
# mask (alpha > 0) is exactly the set of pixels the shadow changes.
_SHADOW_CUT = 0.1
# Reflection alpha below this is cut to exactly 0 (the faded tail is invisible anyway).
_REFLECTION_CUT = 0.04


@dataclass(frozen=True)
class FrameLayers:
    """Everything needed to composite one frame with any subset of its objects.

    Per-object arrays follow ``scene.objects`` order (K objects).

    Attributes:
        background: ``(H, W, 3)`` float32 in [0, 255], the panned background with floor tint.
        silhouettes: ``(K, H, W)`` bool, each object's full shape (before occlusion).
        colours: ``(K, H, W, 3)`` float32, object texture (valid inside the silhouette).
        shadows: ``(K, H, W)`` float32 darkening alpha in [0, 1).
        reflection_alpha: ``(K, H, W)`` float32 blend alpha in [0, 1).
        reflection_colour: ``(K, H, W, 3)`` float32.
    """

    background: np.ndarray
    silhouettes: np.ndarray
    colours: np.ndarray
    shadows: np.ndarray
    reflection_alpha: np.ndarray
    reflection_colour: np.ndarray


def _background(scene: SceneSpec, texture: np.ndarray, t: int) -> np.ndarray:
    steps = max(scene.num_frames - 1, 1)
    m = scene.pan_margin
    ox = m + scene.pan_velocity[0] * (t - steps / 2)
    oy = m + scene.pan_velocity[1] * (t - steps / 2)
    warp = np.array([[1, 0, ox], [0, 1, oy]], np.float64)
    bg = cv2.warpAffine(
        texture,
        warp,
        (scene.width, scene.height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )
    if scene.floor_y is not None:
        rows = np.arange(scene.height) >= scene.floor_y
        bg[rows] = 0.6 * bg[rows] + 0.4 * np.asarray(scene.floor_colour, np.float32)
    return bg


def frame_layers(scene: SceneSpec, t: int, texture: np.ndarray | None = None) -> FrameLayers:
    """Layers of frame ``t``; pass ``texture=background_texture(scene)`` to reuse it."""
    h, w, k = scene.height, scene.width, len(scene.objects)
    texture = background_texture(scene) if texture is None else texture
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sil = np.zeros((k, h, w), bool)
    col = np.zeros((k, h, w, 3), np.float32)
    sha = np.zeros((k, h, w), np.float32)
    ra = np.zeros((k, h, w), np.float32)
    rc = np.zeros((k, h, w, 3), np.float32)
    pad = math.ceil(3 * scene.shadow_blur) + 1
    for i, obj in enumerate(scene.objects):
        cx, cy, ang = object_pose(obj, t, w, h)
        outline = object_outline(obj, cx, cy, ang)
        sil[i] = fill_polygon(outline, h, w)
        col[i] = object_texture(obj, cx, cy, ang, xs, ys)
        shift = np.array(scene.shadow_offset) * obj.radius
        cast = fill_polygon(outline + shift, h + 2 * pad, w + 2 * pad, (pad, pad))
        soft = cv2.GaussianBlur(cast.astype(np.float32), (0, 0), scene.shadow_blur)
        soft = soft[pad : pad + h, pad : pad + w]
        sha[i] = scene.shadow_strength * np.clip((soft - _SHADOW_CUT) / (1 - _SHADOW_CUT), 0, 1)
        if scene.floor_y is not None:
            fy = scene.floor_y
            mirrored = outline * np.array([1.0, -1.0]) + np.array([0.0, 2 * fy])
            below = ys > fy
            inside = fill_polygon(mirrored, h, w) & below
            fade = np.clip(1 - (ys - fy) / (0.45 * h), 0, 1) * scene.reflectivity
            alpha = np.where(inside & (fade >= _REFLECTION_CUT), fade, 0).astype(np.float32)
            ra[i] = alpha
            rc[i] = object_texture(obj, cx, cy, ang, xs, 2 * fy - ys)
    return FrameLayers(_background(scene, texture, t), sil, col, sha, ra, rc)


def composite(scene: SceneSpec, layers: FrameLayers, include: Sequence[bool]) -> np.ndarray:
    """Frame ``(H, W, 3)`` uint8 with only the objects flagged in ``include`` (scene order)."""
    out = layers.background.copy()
    for i in range(len(scene.objects)):
        if include[i]:
            out *= (1 - layers.shadows[i])[..., None]
    for i in range(len(scene.objects)):
        if include[i]:
            a = layers.reflection_alpha[i][..., None]
            out = out * (1 - a) + layers.reflection_colour[i] * a
    for i in sorted(range(len(scene.objects)), key=lambda j: scene.objects[j].depth):
        if include[i]:
            out = np.where(layers.silhouettes[i][..., None], layers.colours[i], out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def visible_masks(scene: SceneSpec, layers: FrameLayers) -> np.ndarray:
    """Instance masks ``(K, H, W)`` bool: each silhouette minus the nearer objects' silhouettes."""
    vis = layers.silhouettes.copy()
    for i, a in enumerate(scene.objects):
        for j, b in enumerate(scene.objects):
            if b.depth > a.depth:
                vis[i] &= ~layers.silhouettes[j]
    return vis


@dataclass(frozen=True)
class RenderedVideo:
    """A rendered clip with its ground truth (K objects in scene order, T frames).

    Attributes:
        frames: ``(T, H, W, 3)`` uint8, the video with every object.
        instance_masks: ``(K, T, H, W)`` bool, visible part of each object (no effects).
        effect_masks: ``(K, T, H, W)`` bool, shadow ∪ reflection support of each object.
        reflection_masks: ``(K, T, H, W)`` bool, the reflection part of ``effect_masks``.
        clean_plates: ``(K, T, H, W, 3)`` uint8, the video without object k and its effects.
        background: ``(T, H, W, 3)`` uint8, the video with no object at all.
    """

    scene: SceneSpec
    frames: np.ndarray
    instance_masks: np.ndarray
    effect_masks: np.ndarray
    reflection_masks: np.ndarray
    clean_plates: np.ndarray
    background: np.ndarray

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(o.object_id for o in self.scene.objects)

    def index_of(self, object_id: int) -> int:
        return self.object_ids.index(object_id)


def render_video(scene: SceneSpec) -> RenderedVideo:
    """Render every frame, mask and plate of ``scene``."""
    k, t_n, h, w = len(scene.objects), scene.num_frames, scene.height, scene.width
    texture = background_texture(scene)
    frames = np.empty((t_n, h, w, 3), np.uint8)
    inst = np.empty((k, t_n, h, w), bool)
    eff = np.empty((k, t_n, h, w), bool)
    refl = np.empty((k, t_n, h, w), bool)
    plates = np.empty((k, t_n, h, w, 3), np.uint8)
    bare = np.empty((t_n, h, w, 3), np.uint8)
    for t in range(t_n):
        layers = frame_layers(scene, t, texture)
        frames[t] = composite(scene, layers, [True] * k)
        bare[t] = composite(scene, layers, [False] * k)
        inst[:, t] = visible_masks(scene, layers)
        refl[:, t] = layers.reflection_alpha > 0
        eff[:, t] = (layers.shadows > 0) | refl[:, t]
        for i in range(k):
            plates[i, t] = composite(scene, layers, [j != i for j in range(k)])
    return RenderedVideo(scene, frames, inst, eff, refl, plates, bare)
