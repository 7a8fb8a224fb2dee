"""Safe, bounded, lazy frame access: image files (PIL) and mp4 files (PyAV).

Every reader goes through these helpers so that the same rules hold everywhere:

- paths taken from annotation files must stay inside the dataset root (:func:`safe_join`);
- declared sizes are checked before anything is allocated (:func:`check_geometry`);
- images are size-checked from their header before their pixels are decoded;
- videos are decoded frame by frame, never held whole in memory.

Errors are raised as :class:`FrameError` with a message naming the file; readers turn them into
:class:`~datagen.record.BadVideo` for the video concerned.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

import av
import numpy as np
from PIL import Image

# Upper bounds on what any reader agrees to decode (a 8K frame is 7680x4320).
MAX_FRAME_PIXELS = 8192 * 8192
MAX_VIDEO_FRAMES = 100_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class FrameError(ValueError):
    """A frame file is missing, escapes the root, is too large or cannot be decoded."""


def check_geometry(width: object, height: object, length: object | None, *, where: str) -> None:
    """Refuse absurd declared sizes before anything is allocated.

    Args:
        width, height: declared frame size in pixels (ints or integer-valued floats).
        length: declared number of frames, or ``None`` when not known.
        where: file and field prefix for the message, e.g. ``"train.json: videos[3]"``.
    """
    for name, v in (("width", width), ("height", height), ("length", length)):
        if v is None and name == "length":
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not float(v).is_integer():
            raise FrameError(f"{where}: '{name}' must be an integer, got {v!r}")
        if v <= 0:
            raise FrameError(f"{where}: '{name}' must be positive, got {v!r}")
    if int(width) * int(height) > MAX_FRAME_PIXELS:  # type: ignore[arg-type]
        raise FrameError(
            f"{where}: declared frame size {int(width)}x{int(height)} exceeds the limit of "  # type: ignore[arg-type]
            f"{MAX_FRAME_PIXELS} pixels (8192x8192)"
        )
    if length is not None and int(length) > MAX_VIDEO_FRAMES:  # type: ignore[arg-type]
        raise FrameError(
            f"{where}: declared length {int(length)} exceeds the limit of {MAX_VIDEO_FRAMES} "  # type: ignore[arg-type]
            "frames"
        )


def safe_join(root: Path, relative: str, *, where: str) -> Path:
    """Join a path from an annotation file to ``root``, refusing anything that escapes it.

    Rejects absolute paths (POSIX or Windows style) and any ``..`` component.
    """
    if not isinstance(relative, str) or not relative:
        raise FrameError(f"{where}: expected a relative file path, got {relative!r}")
    posix, win = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or win.is_absolute() or win.drive or relative.startswith("\\"):
        raise FrameError(f"{where}: path {relative!r} is absolute; expected one relative to {root}")
    if ".." in posix.parts or ".." in win.parts:
        raise FrameError(f"{where}: path {relative!r} escapes the dataset root {root} ('..')")
    return root / posix


def find_image(path: Path) -> Path | None:
    """``path`` if it exists, else a file with the same stem and another image extension."""
    if path.is_file():
        return path
    for ext in IMAGE_EXTENSIONS:
        for candidate in (path.with_suffix(ext), path.with_suffix(ext.upper())):
            if candidate.is_file():
                return candidate
    return None


def open_image(path: Path) -> Image.Image:
    """Open an image lazily (header only) with its pixel count bounded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise FrameError(f"{path}: image too large to decode ({e})") from e
    except FileNotFoundError as e:
        raise FrameError(f"{path}: file not found") from e
    except OSError as e:
        raise FrameError(f"{path}: not a readable image ({e})") from e
    if im.width * im.height > MAX_FRAME_PIXELS:
        im.close()
        raise FrameError(f"{path}: image {im.width}x{im.height} exceeds {MAX_FRAME_PIXELS} pixels")
    return im


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding pixels."""
    with open_image(path) as im:
        return im.width, im.height


def read_rgb(path: Path, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image to ``(H, W, 3)`` uint8 RGB, checking ``size = (width, height)`` first."""
    with open_image(path) as im:
        if size is not None and im.size != size:
            raise FrameError(
                f"{path}: image is {im.width}x{im.height}, expected {size[0]}x{size[1]} "
                "(the video's width x height)"
            )
        try:
            return np.asarray(im.convert("RGB"))
        except OSError as e:  # truncated or corrupt file
            raise FrameError(f"{path}: cannot decode image ({e})") from e


def numbered_indices(stems: Sequence[str]) -> tuple[int, ...]:
    """Source frame indices from frame file names: ``00005`` → 5 when every stem is a strictly
    increasing number, else the position in the list (file order)."""
    if stems and all(re.fullmatch(r"\d{1,9}", s) for s in stems):
        nums = [int(s) for s in stems]
        if all(a < b for a, b in itertools.pairwise(nums)):
            return tuple(nums)
    return tuple(range(len(stems)))


def probe_video(path: Path) -> tuple[int, int, int, float | None]:
    """``(width, height, frame_count, fps)`` from an mp4 header (frame_count 0 when unknown)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate
            return (
                stream.codec_context.width,
                stream.codec_context.height,
                int(stream.frames or 0),
                float(rate) if rate else None,
            )
    except FileNotFoundError as e:
        raise FrameError(f"{path}: video file not found") from e
    except av.FFmpegError as e:
        raise FrameError(f"{path}: unreadable video ({e})") from e


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
        size: expected ``(width, height)``.
        total: expected number of frames in the file.

    Yields:
        ``(H, W, 3)`` uint8 RGB frames.

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
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                if n in needed:
                    if (frame.width, frame.height) != size:
                        raise FrameError(
                            f"{path}: frame {n} is {frame.width}x{frame.height}, expected "
                            f"{size[0]}x{size[1]}"
                        )
                    buffered[n] = frame.to_ndarray(format="rgb24")
                while pos < len(wanted) and wanted[pos] in buffered:
                    idx = wanted[pos]
                    pos += 1
                    remaining[idx] -= 1
                    yield buffered[idx] if remaining[idx] else buffered.pop(idx)
                if n >= last:
                    return
    except av.FFmpegError as e:
        raise FrameError(f"{path}: cannot decode video ({e})") from e
    raise FrameError(
        f"{path}: video ended before frame {last}: it is truncated or shorter than the "
        f"{total} frames declared"
    )
