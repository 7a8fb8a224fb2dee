"""A tiny DAVIS 2017 folder (the official layout) for the ``--benchmark davis2017`` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.boards.davis2017 import palette

H, W, T = 32, 48, 5


def id_maps(n_objects: int, T: int = T) -> np.ndarray:
    """``(T, H, W)`` uint8 ids: object 1 a 10x12 box moving right 2 px a frame, object 2 a 8x8
    box moving down 2 px a frame, a 2-px void (255) column at the right edge."""
    ids = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        ids[t, 6:16, 4 + 2 * t : 16 + 2 * t] = 1
        if n_objects >= 2:
            ids[t, 4 + 2 * t : 12 + 2 * t, 30:38] = 2
        ids[t, :, W - 2 :] = 255
    return ids


def write_ids(folder: Path, ids: np.ndarray, start: int = 0) -> None:
    """``(T, H, W)`` ids as palette PNGs ``folder/00000.png`` ... (from frame ``start``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(ids):
        im = Image.fromarray(frame, mode="P")
        im.putpalette(palette())
        im.save(folder / f"{start + t:05d}.png")


def frames_for(ids: np.ndarray, seed: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames: a fixed textured background, objects in solid colours."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 200, (H, W, 3), dtype=np.uint8)
    frames = np.repeat(background[None], len(ids), axis=0)
    frames[ids == 1] = (200, 180, 40)
    frames[ids == 2] = (40, 160, 220)
    return frames


def write_davis(
    root: Path, sequences: dict[str, int], split: str = "val", T: int = T
) -> dict[str, np.ndarray]:
    """Write ``root`` with one sequence per ``{name: object count}``; returns the id maps."""
    all_ids = {}
    for i, (name, n) in enumerate(sequences.items()):
        ids = id_maps(n, T)
        all_ids[name] = ids
        write_ids(root / "Annotations" / "480p" / name, ids)
        jpg = root / "JPEGImages" / "480p" / name
        jpg.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames_for(ids, seed=i)):
            Image.fromarray(frame).save(jpg / f"{t:05d}.jpg", quality=95)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{split}.txt").write_text("\n".join(sequences) + "\n")
    return all_ids
