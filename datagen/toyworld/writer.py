"""Write a toy-world dataset in YouTube-VIS layout, with its ground truth.

Output (``N`` videos, ids ``toy_000000 ...``)::

    ROOT/annotations.json                 YouTube-VIS JSON (videos, annotations, categories, info)
    ROOT/JPEGImages/<video>/%05d.png      RGB frames (lossless PNG; file_names "<video>/00000.png")
    ROOT/ground_truth/<video>/masks.npz   instance / effect / reflection masks
    ROOT/ground_truth/<video>/plates.npz  per-object clean plates + all-objects-removed plate
    ROOT/world.json                       generator config, seed, video ids (written last)

Annotation tracks: one per object that is visible at least once; ``segmentations`` are compressed
COCO RLEs (string counts, ``pycocotools.mask.encode`` of Fortran-ordered masks) or ``null`` where
the object is not visible (outside the frame or fully occluded); ``areas`` and ``bboxes`` match.
Extensions to the YouTube-VIS fields: each video entry has ``name`` (``toy_000000``, its folder) and
``fps``; each track has ``object_id`` (the object's id within its video, as in the ground truth).
Category names are the shape names (:data:`~datagen.toyworld.world.SHAPES`, ids from 1).

Videos are rendered and written one at a time (optionally in worker processes); each video depends
only on ``(seed, index)``. A rerun over a complete output with the same parameters does nothing;
a second writer into a folder being written is refused (:class:`contracts.ownership.FolderLock`).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from contracts.jobs import write_json_atomic
from contracts.ownership import LOCK_FILE, FolderLock

from .ground_truth import save_ground_truth
from .render import RenderedVideo, render_video
from .world import SHAPES, WorldConfig, sample_scene, video_id_for

FORMAT_VERSION = 1
_INCOMPLETE = ".toyworld-incomplete"
CATEGORIES = [{"id": i + 1, "name": s, "supercategory": "object"} for i, s in enumerate(SHAPES)]


def stderr_progress(message: str) -> None:
    print(f"[toyworld] {message}", file=sys.stderr, flush=True)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an RGB ``(H, W, 3)`` or grey ``(H, W)`` uint8 image as PNG."""
    img = image[..., ::-1] if image.ndim == 3 else image
    if not cv2.imwrite(str(path), np.ascontiguousarray(img)):
        raise OSError(f"{path}: could not write PNG")


def encode_track(masks: np.ndarray) -> tuple[list, list, list]:
    """Per-frame compressed RLE / area / bbox of ``(T, H, W)`` bool masks; ``None`` when empty."""
    segs, areas, boxes = [], [], []
    for m in masks:
        if not m.any():
            segs.append(None)
            areas.append(None)
            boxes.append(None)
            continue
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        segs.append({"size": [int(x) for x in rle["size"]], "counts": rle["counts"].decode()})
        areas.append(int(mask_utils.area(rle)))
        boxes.append([float(x) for x in mask_utils.toBbox(rle)])
    return segs, areas, boxes


def video_annotations(video: RenderedVideo, fps: float) -> tuple[dict, list[dict]]:
    """YouTube-VIS ``videos[]`` entry (without ``id``) and tracks (without ``id``/``video_id``)."""
    scene = video.scene
    vid = scene.video_id
    entry = {
        "name": vid,
        "fps": fps,
        "width": scene.width,
        "height": scene.height,
        "length": scene.num_frames,
        "file_names": [f"{vid}/{t:05d}.png" for t in range(scene.num_frames)],
    }
    tracks = []
    for k, obj in enumerate(scene.objects):
        if not video.instance_masks[k].any():
            continue  # never visible: a VIS dataset would not annotate it
        segs, areas, boxes = encode_track(video.instance_masks[k])
        tracks.append(
            {
                "object_id": obj.object_id,
                "category_id": SHAPES.index(obj.shape) + 1,
                "iscrowd": 0,
                "segmentations": segs,
                "areas": areas,
                "bboxes": boxes,
            }
        )
    return entry, tracks


def _write_one(args: tuple[str, WorldConfig, int, int]) -> tuple[dict, list[dict]]:
    root_s, cfg, seed, index = args
    root = Path(root_s)
    video = render_video(sample_scene(cfg, seed, index))
    frame_dir = root / "JPEGImages" / video.scene.video_id
    frame_dir.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(video.frames):
        write_png(frame_dir / f"{t:05d}.png", frame)
    save_ground_truth(root, video)
    return video_annotations(video, cfg.fps)


def world_description(cfg: WorldConfig, seed: int, num_videos: int) -> dict:
    return {
        "generator": "datagen.toyworld",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "num_videos": num_videos,
        "config": cfg.to_dict(),
        "video_ids": [video_id_for(i) for i in range(num_videos)],
    }


def is_complete(root: Path, description: dict) -> bool:
    """True when ``root`` holds a finished dataset written with exactly ``description``."""
    world, ann = root / "world.json", root / "annotations.json"
    if not (world.is_file() and ann.is_file()):
        return False
    try:
        return json.loads(world.read_text()) == description
    except (json.JSONDecodeError, OSError):
        return False


def write_dataset(
    root: Path | str,
    cfg: WorldConfig,
    *,
    num_videos: int,
    seed: int = 0,
    workers: int = 1,
    force: bool = False,
    progress: Callable[[str], None] | None = stderr_progress,
) -> Path:
    """Render ``num_videos`` videos of world ``seed`` into ``root`` (see module docstring)."""
    if num_videos < 1:
        raise ValueError(f"num_videos={num_videos}: expected >= 1")
    root = Path(root)
    say = progress or (lambda _msg: None)
    description = world_description(cfg, seed, num_videos)
    # One writer at a time (a second run into root is refused); world.json is the owner marker.
    with FolderLock(root, what="--out"):
        return _write_locked(root, cfg, description, workers=workers, force=force, say=say)


def _write_locked(
    root: Path, cfg: WorldConfig, description: dict, *, workers: int, force: bool, say: Callable
) -> Path:
    """:func:`write_dataset` while holding ``root``'s lock."""
    seed, num_videos = description["seed"], description["num_videos"]
    if is_complete(root, description) and not force:
        say(f"{root}: complete ({num_videos} videos, seed {seed}), nothing to do")
        return root
    if (root / "world.json").is_file() and not force:
        raise FileExistsError(
            f"{root}/world.json describes another toy world; pass --force (force=True) to overwrite"
        )
    ours = (root / "world.json").is_file() or (root / _INCOMPLETE).is_file()
    others = [p for p in root.iterdir() if p.name != LOCK_FILE] if root.is_dir() else []
    if others and not ours and not force:
        raise FileExistsError(
            f"{root}: not empty and not a toy-world folder (no world.json); refusing to write "
            "into it; pass --force (force=True) to overwrite its JPEGImages/ and ground_truth/"
        )
    for name in ("world.json", "annotations.json"):
        (root / name).unlink(missing_ok=True)
    for name in ("JPEGImages", "ground_truth"):
        shutil.rmtree(root / name, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    # Marks a toy-world folder whose writing has not finished, so that a rerun may redo it.
    (root / _INCOMPLETE).write_text(json.dumps(description) + "\n")
    jobs = [(str(root), cfg, seed, i) for i in range(num_videos)]
    videos, annotations = [], []
    start = time.monotonic()
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(_write_one, jobs, chunksize=4) if pool else map(_write_one, jobs)
        for i, (entry, tracks) in enumerate(results):
            videos.append({"id": i + 1, **entry})
            for track in tracks:
                annotations.append({"id": len(annotations) + 1, "video_id": i + 1, **track})
            done = i + 1
            if done == num_videos or done % max(1, num_videos // 20) == 0:
                rate = done / max(time.monotonic() - start, 1e-6)
                say(f"{done}/{num_videos} videos ({rate:.1f} videos/s)")
    finally:
        if pool:
            pool.shutdown()
    info = {"description": "GenProp procedural toy world", "seed": seed, "version": FORMAT_VERSION}
    write_json_atomic(
        root / "annotations.json",
        {"info": info, "videos": videos, "annotations": annotations, "categories": CATEGORIES},
    )
    write_json_atomic(root / "world.json", description)
    (root / _INCOMPLETE).unlink(missing_ok=True)
    say(f"wrote {num_videos} videos, {len(annotations)} tracks to {root}")
    return root
