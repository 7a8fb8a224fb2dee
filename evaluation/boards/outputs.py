"""Reading a method's output video and caching computed outputs, for the real-footage boards.

A method's output for video ``ID`` may be, in the first form found:

- ``DIR/ID.mp4`` (or another container: PROVE's scorer pairs results with inputs by file name);
- ``DIR/ID/generate.mp4`` (EditVerseBench's result layout);
- ``DIR/ID/`` holding ``%05d.png`` (or any sorted PNG/JPG) frames.

Baselines and GenProp runs are cached as PNG frames under ``OUT/<group>/<name>/ID/`` and reused by
later runs when the folder holds enough frames.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from genprop.inference.video_io import (
    VIDEO_SUFFIXES,
    VideoReadError,
    list_frame_files,
    read_video,
    write_frames_dir,
)

GENERATED_NAME = "generate.mp4"  # EditVerseBench's per-video result file


class OutputError(ValueError):
    """A method's output for one video is missing or unreadable; the message names the path."""


def find_output(folder: Path, video_id: str) -> Path:
    """The path of a method's output for ``video_id`` under ``folder`` (see the module docs)."""
    for suffix in VIDEO_SUFFIXES:
        if (folder / f"{video_id}{suffix}").is_file():
            return folder / f"{video_id}{suffix}"
    sub = folder / video_id
    if (sub / GENERATED_NAME).is_file():
        return sub / GENERATED_NAME
    if sub.is_dir():
        return sub
    raise OutputError(
        f"{folder}: no output for video {video_id!r} "
        f"(expected {video_id}.mp4, {video_id}/{GENERATED_NAME} or {video_id}/%05d.png)"
    )


def read_output(folder: Path, video_id: str, max_frames: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: the first ``max_frames`` frames of a method's output."""
    path = find_output(folder, video_id)
    try:
        return read_video(path, max_frames=max_frames).frames
    except VideoReadError as e:
        raise OutputError(str(e)) from e


def cached_frames(folder: Path, frames: int, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The ``(T, H, W, 3)`` video cached in ``folder`` as PNGs, computed and written first unless
    the folder already holds ``frames`` frames."""
    try:
        if folder.is_dir() and len(list_frame_files(folder)) >= frames:
            return read_video(folder, max_frames=frames).frames
    except VideoReadError:
        pass  # a damaged cache is recomputed
    video = compute()
    write_frames_dir(folder, video)
    return video
