"""The datasets :mod:`benchmarks.data` measures, prepared in a temp folder (never copied).

The real videos come from a samples folder given on the command line (``--samples-root DIR``):

- ``toyworld``: the built-in toy world, rendered at the clip size (needs no samples folder);
- ``davis``: DAVIS ``bmx-trees`` + ``tennis`` from ``DIR/vos`` (VOS reader), linked;
- ``schoolgirls``: E2FGVI's ``schoolgirls.mp4`` + ``schoolgirls_mask/`` from ``DIR/mp4_masks``
  (mp4_masks reader), linked;
- ``bedroom_640x360``: SAM 2's ``bedroom.mp4`` from ``DIR/video`` (960x540, 200 frames, 30 fps,
  real video without masks) through the mp4_masks reader, with a synthetic mask folder written
  here (two moving ellipses, palette ids 1 and 2), at 32 frames of 640x360.

mp4_masks datasets can be *grown*: the same video and mask folder linked under ``k`` names, so
that peak memory can be compared between two dataset sizes (more distinct videos, same pixels).
Real parts whose files are absent, or all of them without a samples folder, are skipped with a
note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Where each real part lies inside the samples folder.
DAVIS_DIR = "vos"
DAVIS_SEQUENCES = ("bmx-trees", "tennis")
SCHOOLGIRLS_DIR = "mp4_masks"
BEDROOM_FILE = "video/bedroom.mp4"
# The real-video datasets, in the order they are measured (after the toy world).
REAL_DATASETS = ("davis", "schoolgirls", "bedroom_640x360")


@dataclass
class BenchDataset:
    """One dataset to measure: its source config, clip and job size, and an optional bigger copy.

    Attributes:
        source: the ``source`` config group (``name`` + reader options).
        frames, size: clip length and ``(H, W)``.
        num_samples, samples_per_shard: the job measured.
        notes: how the data was made (goes into the JSON).
        grown: ``(videos, source)`` of the same dataset linked under more names, or ``None``.
        videos: number of videos in ``source``.
        source_size: source ``(width, height)`` when all videos share it (for the projection).
        reps: repetitions for this dataset (``None``: the run's).
        three_n: also run a 3N-sample job for the memory-vs-samples check.
    """

    source: dict[str, Any]
    frames: int
    size: tuple[int, int]
    num_samples: int
    samples_per_shard: int
    notes: str
    videos: int
    grown: tuple[int, dict[str, Any]] | None = None
    source_size: tuple[int, int] | None = None
    reps: int | None = None
    three_n: bool = True


def link_mp4_masks(root: Path, video: Path, mask_dir: Path, copies: int) -> dict[str, Any]:
    """An mp4_masks source: ``root`` holding ``copies`` links ``v<k>.mp4`` and ``v<k>_mask``
    (links out of the source folder, hence ``allow_links_outside``).

    Returns:
        The ``source`` config group (``name`` + ``root``).
    """
    root.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        (root / f"v{k:03d}.mp4").symlink_to(video.resolve())
        (root / f"v{k:03d}_mask").symlink_to(mask_dir.resolve(), target_is_directory=True)
    return {"name": "mp4_masks", "root": str(root), "allow_links_outside": True}


def write_ellipse_masks(out: Path, *, width: int, height: int, frames: int) -> Path:
    """A palette mask folder for a video without masks: two ellipses moving across the frame.

    Object 1 drifts left to right, object 2 top to bottom; each covers ~4-6 % of the frame.
    """
    out.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9)
    for t in range(frames):
        u = t / max(frames - 1, 1)
        ids = np.zeros((height, width), np.uint8)
        cx, cy = (0.2 + 0.6 * u) * width, 0.6 * height
        ids[((xx - cx) / (0.14 * width)) ** 2 + ((yy - cy) / (0.18 * height)) ** 2 <= 1] = 1
        cx, cy = 0.3 * width, (0.25 + 0.5 * u) * height
        ids[((xx - cx) / (0.10 * width)) ** 2 + ((yy - cy) / (0.16 * height)) ** 2 <= 1] = 2
        im = Image.fromarray(ids, mode="P")
        im.putpalette(palette)
        im.save(out / f"{t:05d}.png")
    return out


def toyworld(tmp: Path, quick: bool) -> BenchDataset:
    """The toy world rendered at the clip size (tiny with ``quick``)."""
    from datagen.toyworld.world import WorldConfig
    from datagen.toyworld.writer import write_dataset

    side, frames, videos, n = (64, 8, 8, 4) if quick else (256, 16, 16, 16)
    world = WorldConfig(width=side, height=side, num_frames=max(24, frames))
    root = write_dataset(tmp / "toyworld", world, num_videos=videos, progress=None)
    return BenchDataset(
        source={"name": "toyworld", "root": str(root)},
        frames=frames,
        size=(side, side),
        num_samples=n,
        samples_per_shard=max(1, n // 4),
        notes=f"toy world rendered at {side}x{side}, {videos} videos of {world.num_frames} frames",
        videos=videos,
    )


def davis(tmp: Path, quick: bool, samples_root: Path) -> BenchDataset | str:
    """DAVIS bmx-trees + tennis, or why not (a missing sequence)."""
    davis_root = samples_root / DAVIS_DIR
    missing = [s for s in DAVIS_SEQUENCES if not (davis_root / "JPEGImages" / s).is_dir()]
    if missing:
        return f"{davis_root.resolve()} lacks {missing}: DAVIS part not run"
    root = tmp / "davis"  # only the chosen sequences, linked (never copied)
    for sub in ("JPEGImages", "Annotations"):
        (root / sub).mkdir(parents=True)
        for seq in DAVIS_SEQUENCES:
            (root / sub / seq).symlink_to((davis_root / sub / seq).resolve())
    frames, side, n = (4, 64, 4) if quick else (16, 256, 12)
    return BenchDataset(
        source={"name": "vos", "root": str(root), "allow_links_outside": True},
        frames=frames,
        size=(side, side),
        num_samples=n,
        samples_per_shard=max(1, n // 4),
        notes="DAVIS bmx-trees (80 JPG) + tennis (70 PNG), 432x240, binary masks; clips upscaled",
        videos=len(DAVIS_SEQUENCES),
    )


def schoolgirls(tmp: Path, quick: bool, samples_root: Path) -> BenchDataset | str:
    """E2FGVI schoolgirls via mp4_masks (and a grown copy), or why not (missing files)."""
    folder = samples_root / SCHOOLGIRLS_DIR
    video, masks = folder / "schoolgirls.mp4", folder / "schoolgirls_mask"
    if not (video.is_file() and masks.is_dir()):
        return f"{folder.resolve()} lacks schoolgirls.mp4 + schoolgirls_mask/: not run"
    frames, side, n, grow = (4, 64, 4, 3) if quick else (16, 256, 12, 4)
    return BenchDataset(
        source=link_mp4_masks(tmp / "sg1", video, masks, 1),
        frames=frames,
        size=(side, side),
        num_samples=n,
        samples_per_shard=max(1, n // 4),
        notes="E2FGVI schoolgirls.mp4 (80 frames 432x240 24 fps, 7 palette ids) via mp4_masks; "
        "clips upscaled",
        videos=1,
        source_size=(432, 240),
        grown=(grow, link_mp4_masks(tmp / "sgN", video, masks, grow)),
    )


def bedroom(tmp: Path, samples_root: Path) -> BenchDataset | str:
    """SAM 2's bedroom.mp4 with synthetic masks at 32x640x360, or why not (file missing)."""
    video = samples_root / BEDROOM_FILE
    if not video.is_file():
        return f"{video.resolve()} not found: 32x640x360 part not run"
    from datagen.readers.frames import probe_video

    width, height, frames, _ = probe_video(video)
    masks = write_ellipse_masks(tmp / "bedroom_mask", width=width, height=height, frames=frames)
    return BenchDataset(
        source=link_mp4_masks(tmp / "bed2", video, masks, 2),
        frames=32,
        size=(360, 640),
        num_samples=8,
        samples_per_shard=2,
        notes=f"SAM 2 bedroom.mp4 (real video, {frames} frames {width}x{height} 30 fps) via "
        "mp4_masks with a synthetic mask folder (two moving ellipses), linked as 2 videos; "
        "resized to 640x360 (downscaled, not upscaled)",
        videos=2,
        source_size=(width, height),
        reps=1,
        three_n=False,
        grown=(8, link_mp4_masks(tmp / "bed8", video, masks, 8)),
    )


def bench_datasets(
    tmp: Path, quick: bool, samples_root: Path | None = None
) -> tuple[dict[str, BenchDataset], dict[str, str]]:
    """The datasets to measure, prepared under ``tmp``.

    Args:
        tmp: a scratch folder (links and rendered data go there).
        quick: tiny clips; the 32x640x360 part is skipped.
        samples_root: the folder of real sample videos, or ``None`` (the toy world only).

    Returns:
        ``{name: dataset}`` to measure and ``{name: why skipped}``.
    """
    found: dict[str, BenchDataset] = {"toyworld": toyworld(tmp, quick)}
    skipped: dict[str, str] = {}
    if samples_root is None:
        for name in REAL_DATASETS:
            skipped[name] = "no --samples-root given: real-video part not run"
        return found, skipped
    candidates: dict[str, BenchDataset | str] = {
        "davis": davis(tmp, quick, samples_root),
        "schoolgirls": schoolgirls(tmp, quick, samples_root),
    }
    if quick:
        skipped["bedroom_640x360"] = "--quick skips the 32x640x360 clips"
    else:
        candidates["bedroom_640x360"] = bedroom(tmp, samples_root)
    for name, ds in candidates.items():
        if isinstance(ds, str):
            skipped[name] = ds
        else:
            found[name] = ds
    return found, skipped
