"""Safe, bounded, lazy frame access for the dataset readers: image files and mp4 files.

Every reader goes through these helpers so that the same rules hold everywhere:

- paths must stay inside the dataset root and name regular files (:mod:`datagen.readers.paths`);
- declared sizes are checked before anything is allocated (:func:`check_geometry`);
- pixels are decoded by the project's one frame decoder, :mod:`contracts.frames`: images are
  size-checked from their header before their pixels are decoded, every image mode decodes to
  correct 8-bit RGB (16-bit greyscale is scaled, ``v >> 8``, not clipped to white), and frames
  come out upright, as a viewer shows them (EXIF orientation of images, display matrix of
  videos), with every size the readers report and check being the upright size;
- videos are decoded frame by frame, never held whole in memory.

Errors are raised as :class:`FrameError` (the same class as :class:`contracts.frames.FrameError`)
with a message naming the file; readers turn them into :class:`~datagen.record.BadVideo` for the
video concerned.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np

from contracts import frames as _frames
from contracts.frames import (
    DECODE_ERRORS,
    MAX_FRAME_PIXELS,
    FrameError,
    decode_image,
    display_orientation,
    frame_to_rgb8,
    image_size,
    open_image,
    to_rgb8,
)
from datagen.readers.fields import FieldError, as_int

__all__ = [
    "DECODE_ERRORS",
    "IMAGE_EXTENSIONS",
    "MAX_FRAME_PIXELS",
    "MAX_VIDEO_FRAMES",
    "FrameError",
    "check_geometry",
    "find_image",
    "image_size",
    "iter_video_frames",
    "numbered_indices",
    "open_image",
    "probe_video",
    "read_rgb",
    "to_rgb8",
]

MAX_VIDEO_FRAMES = 100_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def check_geometry(
    width: object,
    height: object,
    length: object | None,
    *,
    where: str,
    names: tuple[str, str, str] = ("width", "height", "length"),
) -> None:
    """Refuse absurd declared sizes before anything is allocated.

    Args:
        width, height: declared frame size in pixels (ints or integer-valued floats).
        length: declared number of frames, or ``None`` when not known.
        where: file and field prefix for the message, e.g. ``"train.json: videos[3]"``.
        names: the three fields' names in the file, for the message.

    Raises:
        FrameError: a size that is not a positive integer, or beyond the limits.
    """
    try:
        w = as_int(width, where=f"{where}: '{names[0]}'", minimum=1)
        h = as_int(height, where=f"{where}: '{names[1]}'", minimum=1)
        n = None if length is None else as_int(length, where=f"{where}: '{names[2]}'", minimum=1)
    except FieldError as e:
        raise FrameError(str(e)) from e
    if w * h > MAX_FRAME_PIXELS:
        raise FrameError(
            f"{where}: declared frame size {w}x{h} exceeds the limit of "
            f"{MAX_FRAME_PIXELS} pixels (8192x8192)"
        )
    if n is not None and n > MAX_VIDEO_FRAMES:
        raise FrameError(
            f"{where}: declared length {n} exceeds the limit of {MAX_VIDEO_FRAMES} frames"
        )


def find_image(path: Path) -> Path | None:
    """``path`` if it exists, else a file with the same stem and another image extension.

    Existence is tested without following links or opening anything, so a FIFO or a link out
    of the dataset is returned as found and refused by
    :func:`~datagen.readers.paths.confined_file`, not mistaken for a missing file.
    """
    if os.path.lexists(path):
        return path
    for ext in IMAGE_EXTENSIONS:
        for candidate in (path.with_suffix(ext), path.with_suffix(ext.upper())):
            if os.path.lexists(candidate):
                return candidate
    return None


def read_rgb(path: Path, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image upright to ``(H, W, 3)`` uint8 RGB, checking ``size = (width, height)``
    (as displayed) from the header first.

    See :func:`contracts.frames.decode_image`.
    """
    return decode_image(path, size=size)


def numbered_indices(stems: Sequence[str]) -> tuple[int, ...]:
    """Source frame indices from frame file names: ``00005`` → 5 when every stem is a strictly
    increasing number, else the position in the list (file order)."""
    if stems and all(re.fullmatch(r"\d{1,9}", s) for s in stems):
        nums = [int(s) for s in stems]
        if all(a < b for a, b in itertools.pairwise(nums)):
            return tuple(nums)
    return tuple(range(len(stems)))


def probe_video(path: Path) -> tuple[int, int, int, float | None]:
    """``(width, height, frame_count, fps)`` of a video as displayed (frame_count 0 when the
    header does not say); see :func:`contracts.frames.probe_video`."""
    info = _frames.probe_video(path)
    return info.width, info.height, info.frames, info.fps


def iter_video_frames(
    path: Path, wanted: Sequence[int], *, size: tuple[int, int], total: int
) -> Iterator[np.ndarray]:
    """Decode the given source frame indices of a video, yielding them in the order given.

    Decodes sequentially from the start up to the largest index wanted; frames are kept only
    while waiting to be yielded out of order, so memory is bounded by ``len(wanted)`` frames
    (one frame for ascending requests).

    Args:
        path: the video file.
        wanted: source frame indices, each in ``[0, total)``.
        size: expected ``(width, height)`` as displayed.
        total: expected number of frames in the file.

    Yields:
        ``(H, W, 3)`` uint8 RGB frames, upright (the display matrix applied).

    Raises:
        FrameError: unreadable file, wrong size, or fewer frames than ``total`` (truncated).
    """
    wanted = list(wanted)
    if not wanted:
        return
    if min(wanted) < 0 or max(wanted) >= total:
        raise FrameError(f"{path}: frame index out of range [0, {total})")
    needed = set(wanted)
    remaining = Counter(wanted)  # how many more times each index is still to be yielded
    buffered: dict[int, np.ndarray] = {}
    pos = 0  # next position in `wanted` to yield
    last = max(wanted)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # As many decoder threads as the task's CPUs (a shard task sets OMP_NUM_THREADS to
            # its num_cpus), not FFmpeg's one per core of the node.
            stream.codec_context.thread_count = _decoder_threads()
            orientation = None  # the stream's: read from the first decoded frame we keep
            for n, frame in enumerate(container.decode(stream)):
                if n in needed:
                    try:
                        if orientation is None:
                            orientation = display_orientation(frame)
                        rgb = frame_to_rgb8(frame, orientation=orientation)
                    except FrameError as e:
                        raise FrameError(f"{path}: frame {n}: {e}") from e
                    if (rgb.shape[1], rgb.shape[0]) != size:
                        raise FrameError(
                            f"{path}: frame {n} is {rgb.shape[1]}x{rgb.shape[0]} (as displayed), "
                            f"expected {size[0]}x{size[1]}"
                        )
                    buffered[n] = rgb
                while pos < len(wanted) and wanted[pos] in buffered:
                    idx = wanted[pos]
                    pos += 1
                    remaining[idx] -= 1
                    yield buffered[idx] if remaining[idx] else buffered.pop(idx)
                if n >= last:
                    return
    except (av.FFmpegError, OSError) as e:
        raise FrameError(f"{path}: cannot decode video ({e})") from e
    raise FrameError(
        f"{path}: video ended before frame {last}: it is truncated or shorter than the "
        f"{total} frames declared"
    )


def _decoder_threads() -> int:
    """Decoder threads: ``OMP_NUM_THREADS`` when set to a positive integer, else 1."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1
