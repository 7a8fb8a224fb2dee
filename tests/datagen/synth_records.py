"""Synthetic in-memory records and a tiny YouTube-VIS dataset on disk, for datagen tests.

``make_record`` draws moving rectangles on a smooth gradient (smooth content keeps H.264 error
small); ``write_ytvis`` writes records in YouTube-VIS layout (PNG frames + JSON with RLE) so the
real reader and the whole job can run on them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from contracts.schema import SCHEMA_VERSION, Sample
from datagen.record import ObjectTrack, VideoRecord


@dataclass(frozen=True)
class Box:
    """A moving rectangle, top-left at ``(x0 + vx t, y0 + vy t)``, on frames [start, stop)."""

    object_id: str
    category: str | None
    x0: float
    y0: float
    w: int
    h: int
    vx: float = 1.0
    vy: float = 0.5
    colour: tuple[int, int, int] = (220, 60, 40)
    start: int = 0
    stop: int = 10**9


def box_mask(box: Box, t: int, H: int, W: int) -> np.ndarray | None:
    if not box.start <= t < box.stop:
        return None
    m = np.zeros((H, W), bool)
    x, y = round(box.x0 + box.vx * t), round(box.y0 + box.vy * t)
    m[max(y, 0) : max(y + box.h, 0), max(x, 0) : max(x + box.w, 0)] = True
    return m if m.any() else None


def render(boxes: Sequence[Box], t: int, H: int, W: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    frame = np.stack([40 + 150 * xx / W, 60 + 120 * yy / H, 90 + 60 * (xx + yy) / (H + W)], -1)
    frame = frame + 10 * np.sin(t / 3 + xx / 7)[..., None]
    for b in boxes:
        m = box_mask(b, t, H, W)
        if m is not None:
            frame[m] = b.colour
    return np.clip(frame, 0, 255).astype(np.uint8)


def make_record(
    video_id: str = "v0",
    *,
    T: int = 12,
    H: int = 48,
    W: int = 64,
    boxes: Sequence[Box] | None = None,
    fps: float | None = 6.0,
    source: str = "synthetic",
) -> VideoRecord:
    """A :class:`VideoRecord` of moving rectangles (default: a 'dog' and a 'cat')."""
    if boxes is None:
        boxes = [
            Box("1", "dog", 5, 8, 16, 12),
            Box("2", "cat", 40, 20, 12, 14, vx=-1.0, colour=(30, 200, 90)),
        ]

    def frames_fn(indices):
        for i in indices:
            yield render(boxes, i, H, W)

    objects = tuple(
        ObjectTrack(
            object_id=b.object_id,
            category=b.category,
            present=tuple(t for t in range(T) if box_mask(b, t, H, W) is not None),
            mask_fn=lambda i, b=b: box_mask(b, i, H, W),
        )
        for b in boxes
    )
    return VideoRecord(
        video_id=video_id,
        source=source,
        width=W,
        height=H,
        fps=fps,
        frame_indices=tuple(range(T)),
        annotated=tuple(range(T)),
        objects=objects,
        frames_fn=frames_fn,
    )


def write_ytvis(root: Path, records: Sequence[VideoRecord], *, missing_frames: Sequence[str] = ()):
    """Write ``records`` as a YouTube-VIS dataset; ``missing_frames`` videos keep only frame 0.

    Returns:
        ``(annotations.json path, frames dir)``.
    """
    frames_dir = root / "JPEGImages"
    cats: dict[str, int] = {}
    videos, anns = [], []
    for vi, rec in enumerate(records):
        names = []
        for t, frame in enumerate(rec.frames()):
            name = f"{rec.video_id}/{t * 5:05d}.png"
            (frames_dir / rec.video_id).mkdir(parents=True, exist_ok=True)
            if not (rec.video_id in missing_frames and t > 0):
                Image.fromarray(frame).save(frames_dir / name)
            names.append(name)
        videos.append(
            {
                "id": vi + 1,
                "width": rec.width,
                "height": rec.height,
                "length": rec.num_frames,
                "file_names": names,
            }
        )
        for obj in rec.objects:
            cid = cats.setdefault(obj.category or "thing", len(cats) + 1)
            segs = []
            for t in range(rec.num_frames):
                m = obj.mask(t)
                if m is None:
                    segs.append(None)
                else:
                    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                    segs.append({"size": rle["size"], "counts": rle["counts"].decode()})
            anns.append(
                {
                    "id": len(anns) + 1,
                    "video_id": vi + 1,
                    "category_id": cid,
                    "iscrowd": 0,
                    "segmentations": segs,
                }
            )
    data = {
        "videos": videos,
        "annotations": anns,
        "categories": [{"id": i, "name": n} for n, i in cats.items()],
    }
    ann = root / "annotations.json"
    ann.write_text(json.dumps(data))
    return ann, frames_dir


def tiny_dataset(root: Path, *, videos: int = 3, bad: Sequence[str] = ()) -> tuple[Path, Path]:
    """A YouTube-VIS dataset of ``videos`` 12-frame 48x64 videos (``bad``: ids losing frames)."""
    recs = []
    for v in range(videos):
        boxes = [
            Box("1", "dog", 4 + 3 * v, 6 + v, 16 + v, 12, vx=1 + 0.2 * v),
            Box("2", "cat", 40 - v, 22, 12, 14, vx=-1.0, colour=(30, 200, 90)),
        ]
        recs.append(make_record(f"vid{v}", boxes=boxes))
    return write_ytvis(root, recs, missing_frames=bad)


def smooth_video(T: int, H: int, W: int) -> np.ndarray:
    t, y, x = np.mgrid[0:T, 0:H, 0:W]
    v = np.stack([60 + 2 * x + 3 * t, 80 + 2 * y, 100 + x + y], -1)
    return np.clip(v, 0, 255).astype(np.uint8)


def make_sample(T=5, H=34, W=46, key="s0_1", task="edit") -> Sample:
    video = smooth_video(T, H, W)
    mask = np.zeros((T, H, W), np.uint8)
    mask[:, 5:15, 7:20] = 1
    meta = {
        "task": task,
        "recipe": "mask_fill",
        "prompt": "a video of a dog",
        "source": "synthetic",
        "video_id": "v0",
        "object_ids": ["1"],
        "frame_indices": list(range(0, 5 * T, 5)),
        "fps": 6.0,
        "seed": [0, 0, 1, 0],
        "schema_version": SCHEMA_VERSION,
        "params": {"grow": 5},
    }
    sce = video.copy()
    sce[mask.astype(bool)] = 17
    return Sample(key, sce, video[0].copy(), video, mask, meta)
