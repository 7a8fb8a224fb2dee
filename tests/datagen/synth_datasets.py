"""Tiny synthetic datasets in the real on-disk layouts, for reader / dry-run / bad-input tests.

Each builder writes a few frames of a few dozen pixels so tests stay fast; the layouts and
encodings (list-counts RLE, string RLE, polygons, palette PNGs, H.264 mp4) are the real ones.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def rect_mask(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    """``(H, W)`` bool mask with ones on ``[y0:y1, x0:x1]``."""
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def list_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed (list-counts) COCO RLE, column-major, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def string_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed (string-counts) COCO RLE."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def write_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit-per-channel PNG (PIL writes only 16-bit greyscale itself).

    Args:
        path: the file to write.
        pixels: ``(H, W)`` grey, ``(H, W, 2)`` grey+alpha, ``(H, W, 3)`` RGB or
            ``(H, W, 4)`` RGBA, values in ``0..65535``.
    """
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, w * channels).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def frame_colour(i: int) -> int:
    """Red level that encodes source frame ``i`` (robust to lossy H.264: steps of 8)."""
    return (i % 32) * 8


def write_mp4(
    path: Path, n: int, width: int, height: int, fps: int = 24, *, faststart: bool = False
) -> Path:
    """An H.264 mp4 whose frame ``i`` is flat with red = :func:`frame_colour` (i).

    ``faststart`` puts the index (moov) first, so a truncated file still opens.
    """
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "18"}
        img = np.zeros((height, width, 3), np.uint8)
        for i in range(n):
            img[..., 0] = frame_colour(i)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_frames(frames_dir: Path, file_names: list[str], width: int, height: int) -> None:
    """Placeholder frames (``value = position * 10``) at ``frames_dir / name`` for each name."""
    for i, name in enumerate(file_names):
        p = frames_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (width, height), (i * 10 % 256, 0, 0)).save(p)


def make_ytvis(root: Path, *, width: int = 32, height: int = 24, length: int = 3) -> Path:
    """YouTube-VIS dataset with two videos; returns the annotation file.

    Video 1 ("vid_a"): track 10 (list RLE, null on frame 0), track 11 (polygons),
    track 12 (iscrowd). Video 2 ("vid_b"): track 20 (string RLE) on every frame.
    Frames are PNGs at ``root/JPEGImages/<dir>/0000{5i}.png`` but listed as ``.jpg``.
    """
    h, w = height, width
    names_a = [f"vid_a/{5 * i:05d}.jpg" for i in range(length)]
    names_b = [f"vid_b/{5 * i:05d}.jpg" for i in range(length)]
    for names in (names_a, names_b):
        write_frames(root / "JPEGImages", [n.replace(".jpg", ".png") for n in names], w, h)
    box = rect_mask(h, w, 2, 3, 10, 12)
    poly = [[3.0, 3.0, 15.0, 3.0, 15.0, 12.0, 3.0, 12.0]]
    data = {
        "info": {"description": "synthetic"},
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "sedan"}],
        "videos": [
            {"id": 1, "width": w, "height": h, "length": length, "file_names": names_a},
            {"id": 2, "width": w, "height": h, "length": length, "file_names": names_b},
        ],
        "annotations": [
            {
                "id": 10,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": [None] + [list_rle(box)] * (length - 1),
                "areas": [None] + [int(box.sum())] * (length - 1),
            },
            {
                "id": 11,
                "video_id": 1,
                "category_id": 2,
                "iscrowd": 0,
                "segmentations": [poly] * length,
            },
            {
                "id": 12,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 1,
                "segmentations": [poly] * length,
            },
            {
                "id": 20,
                "video_id": 2,
                "category_id": 2,
                "iscrowd": 0,
                "segmentations": [
                    string_rle(rect_mask(h, w, 0, 0, 5 + i, 6)) for i in range(length)
                ],
            },
        ],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def make_sav(
    root: Path,
    video_id: str = "sav_000002",
    *,
    frames: int = 9,
    width: int = 32,
    height: int = 24,
    faststart: bool = False,
) -> Path:
    """SA-V layout: mp4 + ``_manual.json`` (2 masklets, one with null and empty RLEs)."""
    root.mkdir(parents=True, exist_ok=True)
    write_mp4(root / f"{video_id}.mp4", frames, width, height, faststart=faststart)
    n_ann = (frames - 1) // 4 + 1
    empty = string_rle(np.zeros((height, width), bool))
    box = string_rle(rect_mask(height, width, 1, 1, 9, 9))
    masklet = [[box, None if i == 0 else (empty if i == 1 else box)] for i in range(n_ann)]
    doc = {
        "video_id": video_id,
        "video_duration": frames / 24,
        "video_frame_count": float(frames),
        "video_height": float(height),
        "video_width": float(width),
        "video_resolution": float(width * height),
        "masklet": masklet,
        "masklet_id": [0, 1],
        "masklet_first_appeared_frame": [0.0, 2.0],
        "masklet_num": 2,
    }
    path = root / f"{video_id}_manual.json"
    path.write_text(json.dumps(doc))
    return path


def make_vos(
    root: Path, seq: str = "seq", *, frames: int = 4, width: int = 20, height: int = 16
) -> Path:
    """VOS layout, palette masks with ids 1 and 2 and a void (255) border; returns root."""
    write_frames(root / "JPEGImages" / seq, [f"{i:05d}.jpg" for i in range(frames)], width, height)
    ann = root / "Annotations" / seq
    ann.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        ids = np.zeros((height, width), np.uint8)
        ids[2:8, 2:8] = 1
        if i % 2 == 0:
            ids[9:14, 10:18] = 2
        ids[0, :] = 255  # void
        im = Image.frombytes("P", (width, height), ids.tobytes())
        im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)
        im.save(ann / f"{i:05d}.png")
    return root
