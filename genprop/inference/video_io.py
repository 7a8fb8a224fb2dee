"""Read and write videos: mp4 files (PyAV) and folders of PNG/JPG frames.

Videos are ``(T, H, W, 3)`` uint8 RGB numpy arrays; masks are ``(T, H, W)``.

Reading goes through the project's one frame decoder, :mod:`contracts.frames`: frames come out
upright, the way a player or image viewer shows them (an mp4's display matrix, e.g. a phone's
portrait recording, and a PNG/JPG's EXIF orientation are applied), 16-bit PNGs keep their high
byte instead of turning white, and sizes are bounded before any pixel is decoded. Outputs are
written upright with no rotation tag, so they play the way the input plays.
:func:`open_video` streams frames one at a time with the count and size known up front.

mp4 output is H.264 ``yuv420p`` by default (plays everywhere). 4:2:0 chroma needs even sizes, so an
odd-sized video is edge-padded to even before encoding and its true size is stored in the
container's ``comment`` tag (``genprop:size=WxH``); :func:`read_video` crops it back. The
``codec="lossless"`` option writes ``libx264rgb`` at ``qp=0`` (RGB, exact, any size).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from contracts.frames import (
    MAX_FRAME_PIXELS,
    FrameError,
    Orientation,
    decode_image,
    display_orientation,
    frame_to_rgb8,
    image_size,
    probe_video,
)

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
CODECS = ("h264", "lossless")
DEFAULT_FPS = 24.0  # frames folders carry no rate; this is what we assume and write
MAX_DECODE_PIXELS = MAX_FRAME_PIXELS  # refuse absurd frame sizes instead of allocating them
_SIZE_TAG = re.compile(r"genprop:size=(\d+)x(\d+)")


class VideoReadError(ValueError):
    """A video file or frames folder cannot be read; the message names the path."""


@dataclass(frozen=True)
class Video:
    """A decoded video.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        fps: frames per second (``DEFAULT_FPS`` for a frames folder).
    """

    frames: np.ndarray
    fps: float


def list_frame_files(folder: str | Path) -> list[Path]:
    """Sorted PNG/JPG files of a frames folder; raises :class:`VideoReadError` if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoReadError(f"{folder}: not a folder of frames")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise VideoReadError(f"{folder}: no frame images ({', '.join(FRAME_SUFFIXES)}) found")
    return files


def read_image(path: str | Path, mode: str = "RGB") -> np.ndarray:
    """One image, upright, as uint8: ``(H, W, 3)`` for ``RGB`` or ``(H, W)`` for ``L``.

    See :func:`contracts.frames.decode_image` (EXIF orientation applied, 16-bit scaled).
    """
    path = Path(path)
    try:
        return decode_image(path, mode=mode)
    except FrameError as e:
        raise VideoReadError(str(e)) from e


def iter_frames(path: str | Path, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Stream ``(H, W, 3)`` uint8 upright frames of an mp4 or frames folder, at most
    ``max_frames``."""
    path = Path(path)
    if path.is_dir():
        yield from _iter_files(list_frame_files(path)[:max_frames])
        return
    if not path.is_file():
        raise VideoReadError(f"{path}: no such video file or frames folder")
    yield from _iter_container(path, max_frames)


def _iter_files(files: list[Path]) -> Iterator[np.ndarray]:
    """Upright frames of image files, all the size of the first."""
    shape = None
    for f in files:
        frame = read_image(f)
        if shape is not None and frame.shape != shape:
            raise VideoReadError(
                f"{f}: size {frame.shape[1]}x{frame.shape[0]} differs from "
                f"the folder's first frame {shape[1]}x{shape[0]}"
            )
        shape = frame.shape
        yield frame


def _iter_container(path: Path, max_frames: int | None) -> Iterator[np.ndarray]:
    """Upright frames of a video file: the writer's even-size padding cropped off (by its
    ``genprop:size`` tag), then the display matrix applied."""
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            if w * h > MAX_DECODE_PIXELS:
                raise VideoReadError(f"{path}: frames of {w}x{h} are too large")
            crop = _stored_size(container.metadata.get("comment", ""))
            orientation = None  # the stream's: read from the first frame's display matrix
            for n, frame in enumerate(container.decode(stream)):
                if max_frames is not None and n >= max_frames:
                    return
                try:
                    if orientation is None:
                        orientation = display_orientation(frame)
                    yield frame_to_rgb8(frame, crop=crop, orientation=orientation)
                except FrameError as e:
                    raise VideoReadError(f"{path}: frame {n}: {e}") from e
    except av.FFmpegError as e:
        raise VideoReadError(f"{path}: not a readable video ({e})") from e


def _stored_size(comment: str) -> tuple[int, int] | None:
    m = _SIZE_TAG.search(comment)
    return (int(m.group(1)), int(m.group(2))) if m else None


def video_fps(path: str | Path) -> float:
    """Frame rate of an mp4 (from its stream), or ``DEFAULT_FPS`` for a frames folder."""
    path = Path(path)
    if path.is_dir():
        return DEFAULT_FPS
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: has no video stream")
            rate = (
                container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
            )
    except av.FFmpegError as e:
        raise VideoReadError(f"{path}: not a readable video ({e})") from e
    return float(rate) if rate else DEFAULT_FPS


def read_video(path: str | Path, *, max_frames: int | None = None) -> Video:
    """Decode a whole video (mp4 or frames folder) into memory.

    Args:
        path: an mp4 (or other container PyAV reads) or a folder of sorted PNG/JPG frames.
        max_frames: keep only the first ``max_frames`` frames.

    Returns:
        :class:`Video` with ``frames`` ``(T, H, W, 3)`` uint8.

    Raises:
        VideoReadError: missing, unreadable, empty, or frames of mixed sizes.
    """
    path = Path(path)
    frames = list(iter_frames(path, max_frames=max_frames))
    if not frames:
        raise VideoReadError(f"{path}: contains no decodable frames")
    return Video(frames=np.stack(frames), fps=video_fps(path))


@dataclass(frozen=True)
class FrameStream:
    """A video read one frame at a time, its length and frame size known before any decoding.

    Iterating yields ``(H, W, 3)`` uint8 upright frames, decoded lazily: one frame is held at a
    time, whatever the video's length. It yields exactly ``count`` frames of ``height x width``,
    or raises :class:`VideoReadError` naming the file (a truncated or corrupt video, a frame of
    another size). It can be iterated once.

    Attributes:
        count: number of frames it yields (at most the ``max_frames`` asked for).
        height, width: frame size as displayed.
        fps: frames per second (``DEFAULT_FPS`` for a frames folder).
        frames: the frame iterator.
    """

    count: int
    height: int
    width: int
    fps: float
    frames: Iterator[np.ndarray]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames


def open_video(path: str | Path, *, max_frames: int | None = None) -> FrameStream:
    """Open an mp4 or a frames folder for streaming (see :class:`FrameStream`).

    The count and size come from headers: a frames folder's file list and its first image's
    header; a video's packets (demuxed, not decoded), its ``genprop:size`` tag and its display
    matrix (from its first frame).

    Args:
        path: an mp4 (or other container PyAV reads) or a folder of sorted PNG/JPG frames.
        max_frames: stream only the first ``max_frames`` frames.

    Raises:
        VideoReadError: missing, unreadable, empty, or frames too large.
    """
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if path.is_dir():
        files = list_frame_files(path)[:max_frames]
        try:
            width, height = image_size(files[0])
        except FrameError as e:
            raise VideoReadError(str(e)) from e
        return FrameStream(len(files), height, width, DEFAULT_FPS, _iter_files(files))
    if not path.is_file():
        raise VideoReadError(f"{path}: no such video file or frames folder")
    try:
        orientation = probe_video(path).orientation
    except FrameError as e:
        raise VideoReadError(str(e)) from e
    count, (width, height), fps = _count_packets(path, max_frames, orientation)
    if count == 0:
        raise VideoReadError(f"{path}: contains no decodable frames")
    frames = _exactly(_iter_container(path, max_frames), count, (height, width, 3), path)
    return FrameStream(count, height, width, fps, frames)


def _count_packets(
    path: Path, max_frames: int | None, orientation: Orientation
) -> tuple[int, tuple[int, int], float]:
    """``(frames, upright (width, height), fps)`` of a video file, counting its packets."""
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.video[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            crop = _stored_size(container.metadata.get("comment", ""))
            if crop:
                w, h = min(w, crop[0]), min(h, crop[1])
            rate = stream.average_rate or stream.guessed_rate
            count = 0
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
                    if max_frames is not None and count >= max_frames:
                        break
    except av.FFmpegError as e:
        raise VideoReadError(f"{path}: not a readable video ({e})") from e
    return count, orientation.displayed_size(w, h), float(rate) if rate else DEFAULT_FPS


def _exactly(
    frames: Iterator[np.ndarray], count: int, shape: tuple[int, int, int], path: Path
) -> Iterator[np.ndarray]:
    """``count`` frames of ``shape`` from ``frames``, or :class:`VideoReadError`."""
    n = 0
    with contextlib.closing(frames):  # closes the video file when the caller stops early
        for frame in frames:
            if frame.shape != shape:
                raise VideoReadError(
                    f"{path}: frame {n} is {frame.shape[1]}x{frame.shape[0]}, expected "
                    f"{shape[1]}x{shape[0]} like the video's first frame"
                )
            yield frame
            n += 1
            if n == count:
                return
    raise VideoReadError(
        f"{path}: video ended after {n} of its {count} frames (truncated or corrupt)"
    )


class Mp4Writer:
    """An mp4 written frame by frame: the encoder appends each frame as it comes.

    ``Mp4Writer(path, fps)`` opens the file; :meth:`write` takes ``(H, W, 3)`` or
    ``(N, H, W, 3)`` uint8 RGB (every frame the size of the first); :meth:`close` flushes the
    encoder and closes the file (also on leaving a ``with`` block). Options as :func:`write_video`.
    """

    def __init__(self, path: str | Path, fps: float, *, codec: str = "h264", crf: int = 18) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path, self.fps, self.codec, self.crf = Path(path), fps, codec, crf
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None

    def _open(self, H: int, W: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), mode="w", format="mp4")
        rate = Fraction(self.fps).limit_denominator(1001)
        if self.codec == "h264":
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = W + W % 2, H + H % 2, "yuv420p"
            stream.options = {"crf": str(self.crf), "preset": "medium"}
            container.metadata["comment"] = f"genprop:size={W}x{H}"
        else:
            stream = container.add_stream("libx264rgb", rate=rate)
            stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
            stream.options = {"qp": "0", "preset": "medium"}
        self._container, self._stream, self._size = container, stream, (H, W)

    def write(self, frames: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` frame or a ``(N, H, W, 3)`` batch."""
        for frame in frames[None] if frames.ndim == 3 else frames:
            if self._size is None:
                self._open(*_check_frame(frame, None, self.path))
            _check_frame(frame, self._size, self.path)
            stream, (H, W) = self._stream, self._size
            pad = ((0, stream.height - H), (0, stream.width - W), (0, 0))
            if pad[0][1] or pad[1][1]:
                frame = np.pad(frame, pad, mode="edge")
            self._container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            self.frames += 1

    def close(self) -> Path:
        """Flush the encoder and close the file; a video with no frames is refused."""
        if self._container is None:
            raise ValueError(f"{self.path}: refusing to write a video with no frames")
        container, self._container = self._container, None
        try:
            container.mux(self._stream.encode(None))
        finally:
            container.close()
        return self.path

    def abort(self) -> None:
        """Close the file without flushing (after an error; the caller removes the file)."""
        if self._container is not None:
            container, self._container = self._container, None
            container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | Path,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    codec: str = "h264",
    crf: int = 18,
) -> Path:
    """Write ``(T, H, W, 3)`` uint8 RGB frames to an mp4.

    Args:
        path: output ``.mp4``; parent folders are created.
        frames: array or iterable of ``(H, W, 3)`` uint8 frames, all the same size.
        fps: frame rate (rational approximation with denominator <= 1001).
        codec: ``"h264"`` (yuv420p, odd sizes padded and tagged) or ``"lossless"`` (libx264rgb).
        crf: H.264 quality for ``"h264"`` (0 best .. 51 worst).
    """
    path = Path(path)
    with Mp4Writer(path, fps, codec=codec, crf=crf) as writer:
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise ValueError(f"{path}: refusing to write a video with no frames")
        for frame in _chain(first, it):
            writer.write(frame)
    return path


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _check_frame(frame: np.ndarray, size: tuple[int, int] | None, path: Path) -> tuple[int, int]:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{path}: frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"{path}: frame of size {frame.shape[:2]} differs from the first {size}")
    return frame.shape[0], frame.shape[1]


def write_frames_dir(
    folder: str | Path, frames: np.ndarray | Iterable[np.ndarray], *, start: int = 0
) -> Path:
    """Write frames as ``folder/%05d.png`` (lossless). ``(H, W, 3)`` RGB or ``(H, W)`` L.

    ``start`` numbers the first file (appending to a folder chunk by chunk)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start):
        if frame.dtype != np.uint8:
            raise ValueError(f"{folder}: frame {i} must be uint8, got {frame.dtype}")
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    return folder


def write_mask_dir(folder: str | Path, masks: np.ndarray, *, start: int = 0) -> Path:
    """Write ``(T, H, W)`` masks in [0, 1] (float) or {0, 1}/{0, 255} as 0..255 L PNGs
    (``start``: as :func:`write_frames_dir`)."""
    masks = np.asarray(masks)
    if masks.dtype != np.uint8 or masks.max(initial=0) <= 1:
        masks = np.clip(np.rint(masks.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return write_frames_dir(folder, masks, start=start)


def read_mask_dir(folder: str | Path, *, max_frames: int | None = None) -> np.ndarray:
    """``(T, H, W)`` bool masks from a folder of L/RGB PNGs (pixel >= 128 is inside)."""
    files = list_frame_files(folder)[:max_frames]
    return np.stack([read_image(f, mode="L") >= 128 for f in files])


def write_output(path: str | Path, frames: np.ndarray, fps: float, *, codec: str = "h264") -> Path:
    """Write to ``path`` as an mp4 if it ends in ``.mp4``, as a PNG frames folder if it has no
    suffix (or is an existing folder); any other suffix is refused."""
    path = Path(path)
    if path.suffix.lower() == ".mp4":
        return write_video(path, frames, fps, codec=codec)
    if path.suffix and not path.is_dir():
        raise ValueError(f"{path}: output must be an .mp4 file or a folder (no suffix) for PNGs")
    return write_frames_dir(path, frames)
