"""Reader for the "mp4 + masks folder" layout (E2FGVI / ProPainter examples).

Layout: ``<root>/<name>.mp4`` with ``<root>/<name>_mask/`` (or ``<name>_masks/``) holding one
PNG per video frame, in frame order when sorted by name (numbered names by number). Mask PNGs
are palette ``P`` id maps (pixel = object id, 0 background, 255 void) or binary ``L`` 0/255
(one object, id 1), as in FORMATS.md §3; other greyscale masks follow the rule of
:func:`datagen.readers.vos.greyscale_ids` (decoded by :func:`datagen.readers.vos.read_id_map`).
The mp4 and the mask files must be regular files inside ``root`` once links are followed,
unless ``allow_links_outside`` is set.

Frames are decoded lazily from the mp4 with PyAV, upright: the mp4's display matrix (a phone's
portrait recording) is applied, so the video's size is its size as played and the masks are
drawn on the frames as played (:mod:`contracts.frames`); the frame rate comes from the mp4.
Object ids are found by reading every mask PNG once per process (cached, see
:func:`datagen.readers.vos.scan_object_ids`). A video is unusable (:class:`BadVideo`) when its
mask folder is missing or empty, when the number of masks differs from the number of video
frames, when a mask has another size or an unsupported mode, or when the mp4 is unreadable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import av
import numpy as np

from datagen.readers.fields import FieldError, as_fps
from datagen.readers.frames import (
    MAX_VIDEO_FRAMES,
    FrameError,
    check_geometry,
    iter_video_frames,
    probe_video,
)
from datagen.readers.paths import PathError, confined_dir, confined_file, list_files, resolved_root
from datagen.readers.vos import check_tolerance, png_mask_objects
from datagen.record import BadVideo, DatasetError, Reader, VideoRecord

MASK_DIR_SUFFIXES = ("_mask", "_masks")


def count_video_frames(path: Path) -> int:
    """Number of frames of a video whose header does not say, by demuxing (no decoding).

    Raises:
        FrameError: unreadable file, or more than ``MAX_VIDEO_FRAMES`` frames.
    """
    try:
        with av.open(str(path)) as container:
            n = 0
            for packet in container.demux(container.streams.video[0]):
                if packet.size:
                    n += 1
                    if n > MAX_VIDEO_FRAMES:
                        raise FrameError(f"{path}: more than {MAX_VIDEO_FRAMES} frames")
            return n
    except (av.FFmpegError, OSError) as e:
        raise FrameError(f"{path}: unreadable video ({e})") from e


def _frame_order(path: Path) -> tuple[int, int, str]:
    """Sort key of mask files: numbered names by number (``2.png`` before ``10.png``), then
    other names alphabetically."""
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)


def _frames_at(
    path: Path, frames: int, size: tuple[int, int], video_id: str, indices: Sequence[int]
) -> Iterator[np.ndarray]:
    try:
        yield from iter_video_frames(path, indices, size=size, total=frames)
    except FrameError as e:
        raise BadVideo(video_id, str(e)) from e


class Mp4MasksReader(Reader):
    """Reads ``<name>.mp4`` + ``<name>_mask/`` pairs from one folder; the constructor lists them.

    Args:
        root: the folder holding the mp4 files and their mask folders.
        mask_size_tolerance: masks at most this many pixels off the video size are padded or
            cropped (see :func:`datagen.readers.vos.read_id_map`); larger differences make the
            video unusable.
        allow_links_outside: follow symbolic links that resolve outside the dataset
            folder (refused by default, see :mod:`datagen.readers.paths`).
    """

    source = "mp4_masks"

    def __init__(
        self, *, root: str | Path, mask_size_tolerance: int = 2, allow_links_outside: bool = False
    ) -> None:
        self.root = Path(root)
        self.tolerance = check_tolerance(mask_size_tolerance)
        if not self.root.is_dir():
            raise DatasetError(f"mp4_masks folder not found: {self.root}")
        self._root_real = resolved_root(self.root, allow_links_outside=allow_links_outside)
        # Non-folders are listed even when they are not regular files: loading one says why.
        self._videos = sorted(
            p.stem for p in self.root.iterdir() if p.suffix.lower() == ".mp4" and not p.is_dir()
        )
        if not self._videos:
            raise DatasetError(
                f"{self.root}: no <name>.mp4 files (expected <name>.mp4 + <name>_mask/ pairs)"
            )
        if len(self._videos) > MAX_VIDEO_FRAMES:
            raise DatasetError(f"{self.root}: {len(self._videos)} videos exceeds the limit")

    def list_videos(self) -> list[str]:
        return list(self._videos)

    def _video_path(self, video_id: str) -> Path:
        if video_id not in self._videos or Path(video_id).name != video_id:
            raise BadVideo(video_id, f"no video {video_id!r} in {self.root}")
        for ext in (".mp4", ".MP4", ".Mp4", ".mP4"):
            path = self.root / f"{video_id}{ext}"
            if os.path.lexists(path):
                try:
                    return confined_file(path, self._root_real, what="video")
                except PathError as e:
                    raise BadVideo(video_id, str(e)) from e
        raise BadVideo(video_id, f"{self.root / video_id}.mp4: file not found")

    def _mask_dir(self, video_id: str) -> Path:
        for suffix in MASK_DIR_SUFFIXES:
            d = self.root / f"{video_id}{suffix}"
            if d.is_dir():
                try:
                    return confined_dir(d, self._root_real, what="mask folder")
                except PathError as e:
                    raise BadVideo(video_id, str(e)) from e
        raise BadVideo(
            video_id,
            f"no mask folder {self.root / (video_id + '_mask')} (or {video_id}_masks) for "
            f"{video_id}.mp4",
        )

    def load(self, video_id: str) -> VideoRecord:
        path = self._video_path(video_id)
        mask_dir = self._mask_dir(video_id)
        try:
            width, height, frames, fps = probe_video(path)
            if frames == 0:  # header without a frame count
                frames = count_video_frames(path)
            check_geometry(width, height, frames, where=str(path))
            if fps is not None:
                fps = as_fps(fps, where=f"{path}: frame rate in the video header")
            masks = sorted(
                list_files(mask_dir, self._root_real, (".png",), what="mask"), key=_frame_order
            )
        except (FieldError, FrameError, PathError) as e:
            raise BadVideo(video_id, str(e)) from e
        if not masks:
            raise BadVideo(video_id, f"{mask_dir}: no mask PNGs")
        if len(masks) != frames:
            raise BadVideo(
                video_id,
                f"{mask_dir}: {len(masks)} mask PNGs for {frames} frames in {path}: expected one "
                "mask per video frame",
            )
        size = (width, height)
        mask_paths = dict(enumerate(masks))
        objects = png_mask_objects(video_id, mask_dir, mask_paths, size, self.tolerance)
        return VideoRecord(
            video_id=video_id,
            source=self.source,
            width=width,
            height=height,
            fps=fps,
            frame_indices=tuple(range(frames)),
            annotated=tuple(range(frames)),
            objects=objects,
            frames_fn=partial(_frames_at, path, frames, size, video_id),
        )
