"""Read and write videos: mp4 files (PyAV) and folders of PNG/JPG frames.

Videos are ``(T, H, W, 3)`` uint8 RGB numpy arrays; masks are ``(T, H, W)``.

mp4 output is H.264 ``yuv420p`` by default (plays everywhere). 4:2:0 chroma needs even sizes, so an
odd-sized video is edge-padded to even before encoding and its true size is stored in the
container's ``comment`` tag (``genprop:size=WxH``); :func:`read_video` crops it back. The
``codec="lossless"`` option writes ``libx264rgb`` at ``qp=0`` (RGB, exact, any size).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
CODECS = ("h264", "lossless")
DEFAULT_FPS = 24.0  # frames folders carry no rate; this is what we assume and write
MAX_DECODE_PIXELS = 8192 * 8192  # refuse absurd frame sizes instead of allocating them
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
    """One image as uint8, ``(H, W, 3)`` for ``RGB`` or ``(H, W)`` for ``L``."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_DECODE_PIXELS:
                raise VideoReadError(f"{path}: image of {im.width}x{im.height} is too large")
            return np.asarray(im.convert(mode), dtype=np.uint8).copy()
    except (OSError, SyntaxError) as e:  # PIL raises these for missing/corrupt files
        raise VideoReadError(f"{path}: not a readable image ({e})") from e


def iter_frames(path: str | Path, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Stream ``(H, W, 3)`` uint8 frames of an mp4 or frames folder, at most ``max_frames``."""
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)[:max_frames]
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
        return
    if not path.is_file():
        raise VideoReadError(f"{path}: no such video file or frames folder")
    yield from _iter_container(path, max_frames)


def _iter_container(path: Path, max_frames: int | None) -> Iterator[np.ndarray]:
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            if w * h > MAX_DECODE_PIXELS:
                raise VideoReadError(f"{path}: frames of {w}x{h} are too large")
            crop = _stored_size(container.metadata.get("comment", ""))
            for n, frame in enumerate(container.decode(stream)):
                if max_frames is not None and n >= max_frames:
                    return
                rgb = frame.to_ndarray(format="rgb24")
                yield rgb[: crop[1], : crop[0]] if crop else rgb
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
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"{path}: refusing to write a video with no frames")
    H, W = _check_frame(first, None, path)
    with av.open(str(path), mode="w", format="mp4") as container:
        rate = Fraction(fps).limit_denominator(1001)
        if codec == "h264":
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = W + W % 2, H + H % 2, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            container.metadata["comment"] = f"genprop:size={W}x{H}"
        else:
            stream = container.add_stream("libx264rgb", rate=rate)
            stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
            stream.options = {"qp": "0", "preset": "medium"}
        pad = ((0, stream.height - H), (0, stream.width - W), (0, 0))
        for frame in _chain(first, it):
            _check_frame(frame, (H, W), path)
            if pad[0][1] or pad[1][1]:
                frame = np.pad(frame, pad, mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
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


def write_frames_dir(folder: str | Path, frames: np.ndarray | Iterable[np.ndarray]) -> Path:
    """Write frames as ``folder/%05d.png`` (lossless). ``(H, W, 3)`` RGB or ``(H, W)`` L."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        if frame.dtype != np.uint8:
            raise ValueError(f"{folder}: frame {i} must be uint8, got {frame.dtype}")
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    return folder


def write_mask_dir(folder: str | Path, masks: np.ndarray) -> Path:
    """Write ``(T, H, W)`` masks in [0, 1] (float) or {0, 1}/{0, 255} as 0..255 L PNGs."""
    masks = np.asarray(masks)
    if masks.dtype != np.uint8 or masks.max(initial=0) <= 1:
        masks = np.clip(np.rint(masks.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return write_frames_dir(folder, masks)


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
