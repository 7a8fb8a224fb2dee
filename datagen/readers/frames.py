"""Safe, bounded, lazy frame access: image files (PIL) and mp4 files (PyAV).

Every reader goes through these helpers so that the same rules hold everywhere:

- paths must stay inside the dataset root and name regular files (:mod:`datagen.readers.paths`);
- declared sizes are checked before anything is allocated (:func:`check_geometry`);
- images are size-checked from their header before their pixels are decoded;
- every image mode decodes to correct 8-bit RGB: 16-bit greyscale is scaled (``v >> 8``), not
  clipped to white (:func:`to_rgb8`);
- videos are decoded frame by frame, never held whole in memory.

Errors are raised as :class:`FrameError` with a message naming the file; readers turn them into
:class:`~datagen.record.BadVideo` for the video concerned.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image

from datagen.readers.fields import FieldError, as_int

# Upper bounds on what any reader agrees to decode (a 8K frame is 7680x4320).
MAX_FRAME_PIXELS = 8192 * 8192
MAX_VIDEO_FRAMES = 100_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# What PIL raises on corrupt or truncated files besides OSError (bad chunks, short reads).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)


class FrameError(ValueError):
    """A frame file is missing, escapes the root, is too large or cannot be decoded."""


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
    except DECODE_ERRORS as e:
        raise FrameError(f"{path}: not a readable image ({e})") from e
    if im.width * im.height > MAX_FRAME_PIXELS:
        im.close()
        raise FrameError(f"{path}: image {im.width}x{im.height} exceeds {MAX_FRAME_PIXELS} pixels")
    return im


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding pixels."""
    with open_image(path) as im:
        return im.width, im.height


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Pixels of any supported image mode as ``(H, W, 3)`` uint8 RGB.

    16-bit greyscale (``I;16*``, or ``I`` holding values in ``0..65535``) keeps its 8 high bits
    (``v >> 8``, i.e. ``v / 257`` rounded down): PIL's own conversion would clip every value
    above 255 to white. 16-bit RGB(A) and LA PNGs already decode to 8 bits per channel. Alpha is
    dropped (``LA``, ``RGBA``, ``PA``); palette images take their palette colours.

    Raises:
        FrameError: floating-point images or 32-bit values outside ``0..65535``.
    """
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise FrameError(
                f"unsupported {im.mode!r} image with values outside 0..65535; expected 8- or "
                "16-bit pixels"
            )
        grey = (arr.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if im.mode == "F":
        raise FrameError("unsupported floating-point ('F') image; expected 8- or 16-bit pixels")
    rgb = np.asarray(im.convert("RGB"))
    if rgb.dtype != np.uint8 or rgb.shape != (im.height, im.width, 3):
        raise FrameError(f"image mode {im.mode!r} did not decode to 8-bit RGB")
    return rgb


def read_rgb(path: Path, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image to ``(H, W, 3)`` uint8 RGB, checking ``size = (width, height)`` first.

    See :func:`to_rgb8` for how each image mode is converted.
    """
    with open_image(path) as im:
        if size is not None and im.size != size:
            raise FrameError(
                f"{path}: image is {im.width}x{im.height}, expected {size[0]}x{size[1]} "
                "(the video's width x height)"
            )
        try:
            return to_rgb8(im)
        except FrameError as e:
            raise FrameError(f"{path}: {e}") from e
        except DECODE_ERRORS as e:  # truncated or corrupt file
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
    except (av.FFmpegError, OSError) as e:
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
            if not container.streams.video:
                raise FrameError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # As many decoder threads as the task's CPUs (a shard task sets OMP_NUM_THREADS to
            # its num_cpus), not FFmpeg's one per core of the node.
            stream.codec_context.thread_count = _decoder_threads()
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
