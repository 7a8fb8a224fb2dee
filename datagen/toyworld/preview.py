"""A picture of a written toy world: rows = videos, columns = frame | masks | effects | clean plate.

For each of ``steps`` time steps (first, middle, last frame) four tiles are shown side by side:
the frame, the instance masks (one colour per object), the effect masks (shadow ∪ reflection, same
colours, dimmed) and the all-objects-removed clean plate. Tiles are upscaled (nearest) so a 64x64
world stays readable; a header row names the columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .ground_truth import load_ground_truth

TILES = ("frame", "masks", "effects", "clean")
_PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
    ],
    np.uint8,
)
_HEADER = 14  # pixels
_GROUP_GAP = 4  # pixels between time steps
_ROW_GAP = 2  # pixels between videos


def tile_scale(width: int, height: int) -> int:
    """Integer upscaling so the larger side of a tile is at least ~128 px."""
    return max(1, 128 // max(width, height))


def preview_size(width: int, height: int, num_videos: int, steps: int = 3) -> tuple[int, int]:
    """``(W, H)`` in pixels of the picture :func:`make_preview` draws."""
    s = tile_scale(width, height)
    total_w = steps * len(TILES) * width * s + (steps - 1) * _GROUP_GAP
    total_h = _HEADER + num_videos * height * s + (num_videos - 1) * _ROW_GAP
    return total_w, total_h


def _colour_masks(masks: np.ndarray, dim: float = 1.0) -> np.ndarray:
    """``(K, H, W)`` bool -> ``(H, W, 3)`` uint8, later objects painted over earlier ones."""
    out = np.zeros((*masks.shape[1:], 3), np.uint8)
    for k in range(masks.shape[0]):
        colour = (_PALETTE[k % len(_PALETTE)] * dim).astype(np.uint8)
        out[masks[k]] = colour
    return out


def _read_rgb(root: Path, file_name: str) -> np.ndarray:
    rel = Path(file_name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{root}/annotations.json: file name {file_name!r} escapes JPEGImages/")
    path = root / "JPEGImages" / rel
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: frame missing or unreadable")
    return img[..., ::-1]


def make_preview(root: Path | str, *, num_videos: int = 4, steps: int = 3) -> np.ndarray:
    """Preview ``(H, W, 3)`` uint8 RGB of the first ``num_videos`` videos of ``root``."""
    root = Path(root)
    ann_path = root / "annotations.json"
    if not ann_path.is_file():
        raise FileNotFoundError(f"{ann_path}: not a toy-world dataset (annotations.json missing)")
    videos = json.loads(ann_path.read_text())["videos"][:num_videos]
    if not videos:
        raise ValueError(f"{ann_path}: 'videos' is empty")
    w, h = int(videos[0]["width"]), int(videos[0]["height"])
    s = tile_scale(w, h)
    total_w, total_h = preview_size(w, h, len(videos), steps)
    canvas = np.full((total_h, total_w, 3), 255, np.uint8)
    group_w = len(TILES) * w * s + _GROUP_GAP
    for r, video in enumerate(videos):
        name = video["file_names"][0].split("/")[0]
        gt = load_ground_truth(root, name)
        t_n = len(video["file_names"])
        times = np.linspace(0, t_n - 1, steps).round().astype(int)
        y0 = _HEADER + r * (h * s + _ROW_GAP)
        for g, t in enumerate(times):
            tiles = [
                _read_rgb(root, video["file_names"][t]),
                _colour_masks(gt.instance_masks[:, t]),
                _colour_masks(gt.effect_masks[:, t], dim=0.6),
                gt.background[t],
            ]
            for c, tile in enumerate(tiles):
                big = cv2.resize(tile, (w * s, h * s), interpolation=cv2.INTER_NEAREST)
                x0 = g * group_w + c * w * s
                canvas[y0 : y0 + h * s, x0 : x0 + w * s] = big
    for g, t in enumerate(times):
        for c, label in enumerate(TILES):
            x0 = g * group_w + c * w * s + 2
            text = f"{label} t={t}" if c == 0 else label
            cv2.putText(
                canvas,
                text,
                (x0, _HEADER - 3),
                cv2.FONT_HERSHEY_PLAIN,
                0.8,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
    return canvas


def write_preview(
    root: Path | str, out: Path | str, *, num_videos: int = 4, steps: int = 3
) -> Path:
    """Draw :func:`make_preview` and save it as PNG at ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img = make_preview(root, num_videos=num_videos, steps=steps)
    if not cv2.imwrite(str(out), np.ascontiguousarray(img[..., ::-1])):
        raise OSError(f"{out}: could not write PNG")
    return out
