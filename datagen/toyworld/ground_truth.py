"""On-disk ground truth of a toy-world dataset: save and load, with validation.

Layout, one folder per video (``K`` objects in the video's object order, ``T`` frames)::

    ROOT/ground_truth/<video>/masks.npz
        object_ids        (K,)          int32   object ids within the video (1..K); the
                                                annotation tracks carry the same id in
                                                their ``object_id`` field
        instance_masks    (K, T, H, W)  bool    visible part of each object (= the RLEs in
                                                annotations.json; all-False where absent)
        effect_masks      (K, T, H, W)  bool    shadow ∪ reflection support of each object
        reflection_masks  (K, T, H, W)  bool    the reflection part of effect_masks
    ROOT/ground_truth/<video>/plates.npz
        object_ids        (K,)          int32
        clean_plates      (K, T, H, W, 3) uint8 RGB video without object k and its effects
        background        (T, H, W, 3)  uint8   RGB video with no object at all

Both are ``np.savez_compressed`` archives (lossless) read with ``allow_pickle=False``. An object
that never becomes visible keeps its arrays here but has no track in ``annotations.json``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .render import RenderedVideo

_VIDEO_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_MASK_KEYS = ("object_ids", "instance_masks", "effect_masks", "reflection_masks")
_PLATE_KEYS = ("object_ids", "clean_plates", "background")


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth of one video (shapes as in the module docstring)."""

    video_id: str
    object_ids: tuple[int, ...]
    instance_masks: np.ndarray
    effect_masks: np.ndarray
    reflection_masks: np.ndarray
    clean_plates: np.ndarray
    background: np.ndarray

    def index_of(self, object_id: int) -> int:
        if object_id not in self.object_ids:
            raise KeyError(f"video {self.video_id}: no object {object_id} in {self.object_ids}")
        return self.object_ids.index(object_id)


def ground_truth_dir(root: Path, video_id: str) -> Path:
    if not _VIDEO_ID.match(video_id) or video_id in (".", ".."):
        raise ValueError(f"{root}: video id {video_id!r} is not a plain folder name")
    return Path(root) / "ground_truth" / video_id


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def save_ground_truth(root: Path, video: RenderedVideo) -> Path:
    """Write ``video``'s ground truth under ``root``; returns the folder."""
    folder = ground_truth_dir(root, video.scene.video_id)
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(video.object_ids, np.int32)
    _atomic_savez(
        folder / "masks.npz",
        object_ids=ids,
        instance_masks=video.instance_masks,
        effect_masks=video.effect_masks,
        reflection_masks=video.reflection_masks,
    )
    _atomic_savez(
        folder / "plates.npz",
        object_ids=ids,
        clean_plates=video.clean_plates,
        background=video.background,
    )
    return folder


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ground-truth file missing")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in keys if k not in z.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}, expected {list(keys)}")
        return {k: z[k] for k in keys}


def load_ground_truth(root: Path, video_id: str) -> GroundTruth:
    """Read and check the ground truth of ``video_id`` written by :func:`save_ground_truth`."""
    folder = ground_truth_dir(root, video_id)
    m = _load_npz(folder / "masks.npz", _MASK_KEYS)
    p = _load_npz(folder / "plates.npz", _PLATE_KEYS)
    ids = tuple(int(i) for i in m["object_ids"])
    if tuple(int(i) for i in p["object_ids"]) != ids:
        raise ValueError(f"{folder}: object_ids differ between masks.npz and plates.npz")
    inst = m["instance_masks"]
    if inst.ndim != 4 or inst.shape[0] != len(ids) or inst.dtype != bool:
        raise ValueError(
            f"{folder}/masks.npz: instance_masks {inst.shape} {inst.dtype}, "
            f"expected ({len(ids)}, T, H, W) bool"
        )
    k, t, h, w = inst.shape
    expect = {
        "effect_masks": (m["effect_masks"], (k, t, h, w)),
        "reflection_masks": (m["reflection_masks"], (k, t, h, w)),
        "clean_plates": (p["clean_plates"], (k, t, h, w, 3)),
        "background": (p["background"], (t, h, w, 3)),
    }
    for name, (arr, shape) in expect.items():
        if arr.shape != shape:
            raise ValueError(f"{folder}: {name} has shape {arr.shape}, expected {shape}")
    return GroundTruth(
        video_id=video_id,
        object_ids=ids,
        instance_masks=inst,
        effect_masks=m["effect_masks"].astype(bool),
        reflection_masks=m["reflection_masks"].astype(bool),
        clean_plates=p["clean_plates"].astype(np.uint8),
        background=p["background"].astype(np.uint8),
    )
