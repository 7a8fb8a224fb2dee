"""The one frame decoder: image files and video frames to upright 8-bit RGB.

Every package reads pixels through this module (``datagen``'s dataset readers and
``genprop-propagate``'s input reading), so the same rules hold everywhere:

- **Bounded.** An image's pixel count is checked from its header, and a video's from its stream
  header, before any pixel is decoded (:data:`MAX_FRAME_PIXELS`; PIL's decompression-bomb check
  is an error, not a warning).
- **Correct 8 bits.** Every image mode decodes to ``(H, W, 3)`` uint8 RGB: 16-bit greyscale keeps
  its high byte (``v >> 8``, i.e. ``v / 257`` rounded down) instead of PIL's clip to white; 16-bit
  RGB(A) and grey+alpha PNGs and TIFFs decode to their high bytes; alpha is dropped; palette
  images take their palette colours (:func:`to_rgb8`).
- **Upright, as shown.** Frames come out the way an image viewer or video player shows them: an
  image's EXIF ``Orientation`` tag (JPEG, PNG ``eXIf`` before the image data, TIFF, WebP) and a
  video's display matrix (the mp4 ``tkhd`` matrix a phone writes for a portrait recording) are
  applied, including their mirrorings (:class:`Orientation`). Sizes reported before decoding
  (:func:`image_size`, :func:`probe_video`) are the upright sizes, so a size check never
  disagrees with the decoded frame. Files without orientation metadata are used as stored. An
  unreadable EXIF block counts as no orientation, as in image viewers.

Masks drawn on such frames (DAVIS / YouTube-VOS annotation PNGs) are drawn on the frames as
displayed; they carry no EXIF themselves, so reading them as stored and their frames upright puts
both on the same pixels. Errors are :class:`FrameError`, whose message names the file.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType
from PIL import ExifTags, Image

# Upper bound on what any reader agrees to decode (an 8K frame is 7680x4320).
MAX_FRAME_PIXELS = 8192 * 8192
# What PIL raises on corrupt or truncated files besides OSError (bad chunks, short reads).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)
# What PIL's EXIF parser raises on a malformed block, beyond the decode errors.
_EXIF_ERRORS = (*DECODE_ERRORS, KeyError, IndexError, TypeError)


class FrameError(ValueError):
    """A frame file is missing, too large, or cannot be decoded; the message names the file."""


@dataclass(frozen=True)
class Orientation:
    """How stored pixels map to the picture as displayed: an optional transpose (swap of rows
    and columns), then a left-right and a top-bottom mirror. The eight values cover the eight
    EXIF orientations and every axis-aligned video display matrix.
    """

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @property
    def is_upright(self) -> bool:
        """True when the stored pixels are already as displayed."""
        return not (self.transpose or self.flip_x or self.flip_y)

    def displayed_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` as displayed, from the stored ``width`` and ``height``."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Stored ``(H, W, ...)`` pixels as displayed, C-contiguous (safe for ``torch``)."""
        if self.is_upright:
            return pixels
        out = pixels.swapaxes(0, 1) if self.transpose else pixels
        if self.flip_x:
            out = out[:, ::-1]
        if self.flip_y:
            out = out[::-1]
        return np.ascontiguousarray(out)


UPRIGHT = Orientation()
# EXIF Orientation values (TIFF 6.0 / EXIF 2.3 tag 0x0112): where row 0 and column 0 of the
# stored pixels are shown. 6 is a phone held upright (stored sideways, shown turned clockwise).
EXIF_ORIENTATIONS = {
    1: UPRIGHT,
    2: Orientation(flip_x=True),
    3: Orientation(flip_x=True, flip_y=True),
    4: Orientation(flip_y=True),
    5: Orientation(transpose=True),
    6: Orientation(transpose=True, flip_x=True),
    7: Orientation(transpose=True, flip_x=True, flip_y=True),
    8: Orientation(transpose=True, flip_y=True),
}


# --------------------------------------------------------------------------------------------
# Images


def open_image(path: Path) -> Image.Image:
    """Open an image lazily (header only) with its pixel count bounded.

    Raises:
        FrameError: missing or unreadable file, or more than :data:`MAX_FRAME_PIXELS` pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # A corrupt EXIF block is read as no EXIF (see exif_orientation), not a warning.
            warnings.filterwarnings("ignore", "(Possibly )?[Cc]orrupt EXIF", UserWarning)
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


def exif_orientation(im: Image.Image) -> Orientation:
    """The image's EXIF orientation, read from what its header holds (no pixel is decoded).

    PNG's own ``getexif`` decodes the whole image to look for an ``eXIf`` chunk after the pixel
    data; the PNG specification puts it before, so only the header's chunks are consulted.
    A missing, malformed or out-of-range tag is :data:`UPRIGHT`, as image viewers treat it.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "(Possibly )?[Cc]orrupt EXIF", UserWarning)
            value = Image.Image.getexif(im).get(ExifTags.Base.Orientation, 1)
    except _EXIF_ERRORS:
        return UPRIGHT
    return EXIF_ORIENTATIONS.get(value, UPRIGHT) if isinstance(value, int) else UPRIGHT


def displayed_size(im: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened image as displayed (EXIF orientation applied)."""
    return exif_orientation(im).displayed_size(im.width, im.height)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file as displayed, from its header, without decoding.

    Raises:
        FrameError: see :func:`open_image`.
    """
    with open_image(path) as im:
        return displayed_size(im)


def _grey16_to_8(im: Image.Image) -> np.ndarray | None:
    """16-bit greyscale (``I;16*``, or ``I`` holding ``0..65535``) as ``(H, W)`` uint8 high
    bytes; ``None`` for other modes."""
    if not (im.mode.startswith("I;16") or im.mode == "I"):
        if im.mode == "F":
            raise FrameError("unsupported floating-point ('F') image; expected 8- or 16-bit pixels")
        return None
    arr = np.asarray(im)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
        raise FrameError(
            f"unsupported {im.mode!r} image with values outside 0..65535; expected 8- or 16-bit "
            "pixels"
        )
    return (arr.astype(np.uint32) >> 8).astype(np.uint8)


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Pixels of any supported image mode as stored, ``(H, W, 3)`` uint8 RGB.

    16-bit greyscale keeps its 8 high bits (``v >> 8``): PIL's own conversion would clip every
    value above 255 to white. 16-bit RGB(A) and LA PNGs already decode to 8 bits per channel.
    Alpha is dropped (``LA``, ``RGBA``, ``PA``); palette images take their palette colours.

    Raises:
        FrameError: floating-point images or 32-bit values outside ``0..65535``.
    """
    grey = _grey16_to_8(im)
    if grey is not None:
        return np.repeat(grey[..., None], 3, axis=-1)
    rgb = np.asarray(im.convert("RGB"))
    if rgb.dtype != np.uint8 or rgb.shape != (im.height, im.width, 3):
        raise FrameError(f"image mode {im.mode!r} did not decode to 8-bit RGB")
    return rgb


def to_grey8(im: Image.Image) -> np.ndarray:
    """Pixels as stored, ``(H, W)`` uint8 luma; 16-bit greyscale keeps its high byte.

    Raises:
        FrameError: floating-point images or 32-bit values outside ``0..65535``.
    """
    grey = _grey16_to_8(im)
    if grey is not None:
        return grey
    return np.asarray(im.convert("L"), dtype=np.uint8)


def decode_image(
    path: Path, *, size: tuple[int, int] | None = None, mode: str = "RGB"
) -> np.ndarray:
    """Decode an image file upright: ``(H, W, 3)`` uint8 for ``RGB``, ``(H, W)`` for ``L``.

    Args:
        path: the image file.
        size: expected ``(width, height)`` as displayed, checked from the header before any
            pixel is decoded.
        mode: ``"RGB"`` (:func:`to_rgb8`) or ``"L"`` (:func:`to_grey8`).

    Raises:
        FrameError: missing, too large, of another size, of an unsupported mode, or truncated
            or corrupt.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    with open_image(path) as im:
        orientation = exif_orientation(im)
        shown = orientation.displayed_size(im.width, im.height)
        if size is not None and shown != tuple(size):
            raise FrameError(
                f"{path}: image is {shown[0]}x{shown[1]}, expected {size[0]}x{size[1]} "
                "(the video's width x height)"
            )
        try:
            pixels = to_rgb8(im) if mode == "RGB" else to_grey8(im)
        except FrameError as e:
            raise FrameError(f"{path}: {e}") from e
        except DECODE_ERRORS as e:  # truncated or corrupt file
            raise FrameError(f"{path}: cannot decode image ({e})") from e
    return orientation.apply(pixels)


# --------------------------------------------------------------------------------------------
# Video frames


def display_orientation(frame: av.VideoFrame) -> Orientation:
    """The orientation a player applies to a decoded video frame, from its display matrix.

    The matrix (FFmpeg's ``AV_FRAME_DATA_DISPLAYMATRIX``, from the mp4 ``tkhd`` box) maps a
    stored pixel ``(x, y)`` to ``(a x + c y, b x + d y)`` shown; only the signs of ``a, b, c, d``
    matter for the quarter turns and mirrors that cameras write.

    Raises:
        FrameError: a matrix that is not a quarter turn or a mirror (an arbitrary angle or a
            shear), which no frame of ours could show faithfully.
    """
    data = _display_matrix_entry(frame)
    if data is None:
        return UPRIGHT
    raw = bytes(data)
    if len(raw) != 36:
        raise FrameError(f"display matrix of {len(raw)} bytes; expected 36")
    a, b, _, c, d = (int(v) for v in np.frombuffer(raw, dtype=np.int32)[:5])
    if b == 0 and c == 0 and a != 0 and d != 0:
        return Orientation(flip_x=a < 0, flip_y=d < 0)
    if a == 0 and d == 0 and b != 0 and c != 0:
        return Orientation(transpose=True, flip_x=c < 0, flip_y=b < 0)
    raise FrameError(
        f"unsupported display matrix [{a}, {b}, {c}, {d}] (16.16 fixed point): only quarter "
        "turns and mirrors can be shown"
    )


def frame_to_rgb8(
    frame: av.VideoFrame,
    *,
    crop: tuple[int, int] | None = None,
    orientation: Orientation | None = None,
) -> np.ndarray:
    """A decoded video frame upright, ``(H, W, 3)`` uint8 RGB, C-contiguous.

    Args:
        frame: the decoded frame.
        crop: ``(width, height)`` of the stored picture to keep (top-left), before turning it
            upright: a writer's padding to even sizes is cut off this way.
        orientation: the stream's orientation when the caller already knows it (the display
            matrix is the stream's, so readers take it from the first frame and pass it on:
            reading every frame's side data in PyAV 18 makes a reference cycle per frame that
            only the cycle collector frees, so memory would climb with the video's length).

    Raises:
        FrameError: a frame above :data:`MAX_FRAME_PIXELS`, or an unsupported display matrix.
    """
    if frame.width * frame.height > MAX_FRAME_PIXELS:
        raise FrameError(f"frame of {frame.width}x{frame.height} exceeds {MAX_FRAME_PIXELS} pixels")
    if orientation is None:
        orientation = display_orientation(frame)
    rgb = frame.to_ndarray(format="rgb24")
    if crop is not None:
        rgb = rgb[: crop[1], : crop[0]]
    return np.ascontiguousarray(orientation.apply(rgb))


@dataclass(frozen=True)
class VideoInfo:
    """What a video's headers and first frame say.

    Attributes:
        width, height: frame size as displayed (display matrix applied).
        frames: frame count from the header, 0 when the container does not say.
        fps: average frame rate, ``None`` when unknown.
        orientation: how stored frames are turned to be displayed.
    """

    width: int
    height: int
    frames: int
    fps: float | None
    orientation: Orientation


def probe_video(path: Path) -> VideoInfo:
    """Sizes, frame count and rate of a video file, as displayed.

    The stored size is bounded from the stream header first; the display matrix travels with
    decoded frames, so the first frame is then decoded to learn it (a video with no decodable
    frame is reported as stored; reading its frames says what is wrong).

    Raises:
        FrameError: missing or unreadable file, no video stream, frames too large, or an
            unsupported display matrix.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameError(f"{path}: no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > MAX_FRAME_PIXELS:
                raise FrameError(
                    f"{path}: frames of {width}x{height} exceed {MAX_FRAME_PIXELS} pixels"
                )
            rate = stream.average_rate
            frames = int(stream.frames or 0)
            stream.codec_context.thread_count = 1  # one frame: threads would only add start-up
            first = next(iter(container.decode(stream)), None)
            orientation = UPRIGHT if first is None else _orientation_of(first, path)
    except FileNotFoundError as e:
        raise FrameError(f"{path}: video file not found") from e
    except (av.FFmpegError, OSError) as e:
        raise FrameError(f"{path}: unreadable video ({e})") from e
    shown_w, shown_h = orientation.displayed_size(width, height)
    return VideoInfo(shown_w, shown_h, frames, float(rate) if rate else None, orientation)


def _display_matrix_entry(frame: av.VideoFrame) -> Any:
    """The frame's display-matrix side data, or None. PyAV's side-data container is a mapping
    from the entry type (``get``); before 18.1.1 iterating it gave the entries, from 18.1.1 on
    the types, so the loop over entries is only a fallback."""
    side = frame.side_data
    try:
        data = side.get(SideDataType.DISPLAYMATRIX)
    except (KeyError, TypeError, ValueError):
        data = None
    if data is None:
        for entry in side:
            if getattr(entry, "type", None) == SideDataType.DISPLAYMATRIX:
                return entry
    return data


def _orientation_of(frame: av.VideoFrame, path: Path) -> Orientation:
    try:
        return display_orientation(frame)
    except FrameError as e:
        raise FrameError(f"{path}: {e}") from e
