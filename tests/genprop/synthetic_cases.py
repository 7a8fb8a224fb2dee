"""Tiny synthetic evaluation cases in the contract folder format (a moving square + its shadow).

Used by the eval and propagate-CLI tests; 32x32, a few frames, seeded, lossless PNGs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32
SQUARE = 8
STEP = 2  # pixels per frame to the right
COLOR = np.array([40, 200, 60], np.uint8)
RECOLOR = np.array([40, 60, 220], np.uint8)


@dataclass
class World:
    """Rendered clip: videos ``(T, H, W, 3)`` uint8, masks ``(T, H, W)`` bool."""

    plate: np.ndarray  # background without the object or its shadow
    with_object: np.ndarray
    recolored: np.ndarray
    object_mask: np.ndarray
    shadow_mask: np.ndarray


def background(seed: int = 0) -> np.ndarray:
    """``(32, 32, 3)`` blocky random texture (gives optical flow something to track)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, (SIZE // 4, SIZE // 4, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 4, 0), 4, 1))


def square_texture() -> np.ndarray:
    """``(8, 8, 3)`` 2x2 checker of +0/+30 (texture lets optical flow see the square move)."""
    yy, xx = np.mgrid[0:SQUARE, 0:SQUARE]
    return np.repeat((((yy // 2 + xx // 2) % 2) * 30)[..., None], 3, -1).astype(np.uint8)


def render(T: int = 5, seed: int = 0) -> World:
    """A square moving right by ``STEP`` px/frame, casting a shadow just below it."""
    bg = background(seed)
    plate = np.stack([bg] * T)
    obj = np.zeros((T, SIZE, SIZE), bool)
    shadow = np.zeros((T, SIZE, SIZE), bool)
    for t in range(T):
        x, y = 4 + STEP * t, 8
        obj[t, y : y + SQUARE, x : x + SQUARE] = True
        shadow[t, y + SQUARE : y + SQUARE + 3, x + 1 : x + SQUARE + 1] = True
    shadow &= ~obj
    shaded = plate.copy()
    shaded[shadow] = (shaded[shadow] * 0.5).astype(np.uint8)
    with_object, recolored = shaded.copy(), shaded.copy()
    texture = square_texture()
    for t in range(T):
        with_object[t][obj[t]] = (COLOR + texture).reshape(-1, 3)
        recolored[t][obj[t]] = (RECOLOR + texture).reshape(-1, 3)
    return World(plate, with_object, recolored, obj, shadow)


def _write(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f.astype(np.uint8) * (255 if f.dtype == bool else 1)).save(
            folder / f"{i:05d}.png"
        )


def write_case(root: Path, case_id: str, task: str, world: World, *, effects: bool = True) -> Path:
    """Write one case of ``task`` (removal, edit, insertion or tracking) under ``root``."""
    fx = world.object_mask | world.shadow_mask
    if task == "removal":
        video, gt, edit = world.with_object, world.plate, fx
    elif task == "insertion":
        video, gt, edit = world.plate, world.with_object, fx
    elif task == "edit":
        video, gt, edit = world.with_object, world.recolored, world.object_mask
    elif task == "tracking":
        video, gt, edit = world.with_object, world.with_object.copy(), world.object_mask
        gt[world.object_mask] = (255, 0, 0)
    else:
        raise ValueError(task)
    d = root / case_id
    _write(d / "input", video)
    _write(d / "gt", gt)
    _write(d / "edit_mask", edit)
    _write(d / "object_mask", world.object_mask)
    if effects:
        _write(d / "effect_mask", world.shadow_mask)
    Image.fromarray(gt[0]).save(d / "first_frame.png")
    T = len(video)
    meta = {
        "id": case_id,
        "task": task,
        "prompt": f"{task} the square",
        "fps": 8,
        "num_frames": T,
        "width": SIZE,
        "height": SIZE,
        "world_seed": 0,
        "video_id": "synthetic",
        "object_ids": [1],
        "notes": "test fixture",
    }
    (d / "meta.json").write_text(json.dumps(meta))
    return d


def write_cases(root: Path, tasks: tuple[str, ...] = ("removal", "tracking"), T: int = 5) -> Path:
    """A case folder with one case per task and its ``index.json``."""
    world = render(T)
    entries = []
    for task in tasks:
        cid = f"{task}_000"
        write_case(root, cid, task, world)
        entries.append({"id": cid, "task": task, "dir": cid})
    (root / "index.json").write_text(json.dumps({"version": 1, "cases": entries}))
    return root
