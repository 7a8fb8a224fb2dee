"""Frames for training the demo's learned codec (stage 0): from a toy world folder or from shards.

* A **toy world folder** (written by ``genprop-toyworld write``: ``world.json`` listing the video
  ids, frames in ``JPEGImages/<video>/%05d.png``) is read through :mod:`contracts.frames`, the
  bounded decoder every package uses (this package never imports ``datagen``).
* **Shards** (``genprop-data`` output: a folder of ``.tar``, a file or a brace pattern) are read
  through :class:`training.shard_stream.ShardStream`; each pair's target clip gives its frames.

Frames come back per video, as ``(T, 3, H, W)`` uint8 tensors, so that held-out frames can be
whole videos. A video or sample that cannot be read is skipped, logged and counted, never
silently lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from contracts.frames import FrameError, decode_image
from contracts.jsonfile import read_json_object
from contracts.shard_spec import expand_shards

log = logging.getLogger(__name__)

WORLD_FILE = "world.json"


class FrameSourceError(ValueError):
    """The frame source is missing, malformed or holds no readable frame (the message names it)."""


@dataclass
class VideoFrames:
    """Frames of one source, per video, with the videos that could not be read."""

    videos: list[torch.Tensor] = field(default_factory=list)  # each (T, 3, H, W) uint8
    skipped: list[str] = field(default_factory=list)  # "<video>: <reason>"

    @property
    def num_frames(self) -> int:
        """Frames over all videos."""
        return sum(int(v.shape[0]) for v in self.videos)


def _world_video(root: Path, video: str, max_frames: int) -> torch.Tensor:
    folder = root / "JPEGImages" / video
    files = sorted(folder.glob("*.png"))[:max_frames]
    if not files:
        raise FrameError(f"{folder}: no PNG frame")
    frames = [decode_image(p) for p in files]
    if any(f.shape != frames[0].shape for f in frames):
        raise FrameError(f"{folder}: frames of different sizes")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def read_toy_world(root: Path, *, max_frames: int) -> VideoFrames:
    """Frames of the toy world at ``root``, at most ``max_frames`` in all.

    Raises:
        FrameSourceError: when ``world.json`` is missing or malformed.
    """
    meta = read_json_object(root / WORLD_FILE, what="toy world file", error=FrameSourceError)
    ids = meta.get("video_ids")
    if not isinstance(ids, list) or not all(isinstance(v, str) and v for v in ids):
        raise FrameSourceError(f"{root / WORLD_FILE}: field 'video_ids': expected a list of names")
    out = VideoFrames()
    for video in ids:
        left = max_frames - out.num_frames
        if left <= 0:
            break
        if "/" in video or video.startswith("."):
            out.skipped.append(f"{video}: not a plain folder name")
            continue
        try:
            out.videos.append(_world_video(root, video, left))
        except FrameError as err:
            log.warning("skipping video %s: %s", video, err)
            out.skipped.append(f"{video}: {err}")
    return out


def read_shards(spec: str, *, max_frames: int) -> VideoFrames:
    """Target frames of the training pairs in the shards ``spec``, at most ``max_frames``.

    Corrupt samples are skipped and counted by the stream (``skipped`` lists their count).

    Raises:
        FrameSourceError: when ``spec`` names no local shard.
    """
    from training.shard_stream import ShardStream

    urls = expand_shards(spec, field="--data", remote=False, error=FrameSourceError)
    stream = ShardStream(
        urls=urls, batch_size=1, resampled=False, epoch_batches=None, drop_last=False
    )
    out = VideoFrames()
    corrupt = 0
    for batch in stream:
        corrupt += int(batch.get("skipped", 0))
        clip = batch["target"][0]  # (T, H, W, 3) uint8
        out.videos.append(clip[: max_frames - out.num_frames].permute(0, 3, 1, 2).contiguous())
        if out.num_frames >= max_frames:
            break
    corrupt += stream.skipped
    if corrupt:
        out.skipped.append(f"{corrupt} corrupt sample(s) in {spec}")
    return out


def read_frames(source: str, *, max_frames: int) -> VideoFrames:
    """Frames of a toy world folder (with ``world.json``) or of shards, checked to be usable.

    Raises:
        FrameSourceError: naming ``source`` when it is neither, holds no readable frame, or its
            frames differ in size.
    """
    path = Path(source)
    if "{" not in source and not path.exists():  # a brace pattern names no single path
        raise FrameSourceError(
            f"{source}: does not exist (expected a toy world folder with {WORLD_FILE}, or "
            "pixel shards)"
        )
    if path.is_dir() and (path / WORLD_FILE).is_file():
        frames = read_toy_world(path, max_frames=max_frames)
    elif path.is_dir() and not any(path.glob("*.tar")):
        raise FrameSourceError(
            f"{source}: neither a toy world folder ({WORLD_FILE}) nor a folder of .tar shards"
        )
    else:
        frames = read_shards(source, max_frames=max_frames)
    if not frames.videos:
        raise FrameSourceError(f"{source}: no readable frame ({len(frames.skipped)} skipped)")
    sizes = {tuple(v.shape[1:]) for v in frames.videos}
    if len(sizes) > 1:
        raise FrameSourceError(f"{source}: frames of several sizes {sorted(sizes)}; expected one")
    return frames
