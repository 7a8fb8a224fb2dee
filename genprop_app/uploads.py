"""Checking what users upload before anything is decoded in full: videos (mp4, webm, mov), zips
of frames, edited first frames, and the toy benchmark's cases.

Every check raises :class:`UploadError` with a message for the page (what is wrong and what to
give instead); nothing is unpickled, zips are never extracted by their own member names, and
sizes are bounded before decoding.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from evaluation.cases import CaseError, CaseRef, list_cases, load_case
from genprop.inference.video_io import (
    DEFAULT_FPS,
    FRAME_SUFFIXES,
    VideoReadError,
    iter_frames,
    read_image,
    video_fps,
)

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov")
ZIP_SUFFIX = ".zip"


class UploadError(ValueError):
    """An upload the app refuses; the message names the file and what is expected."""


@dataclass(frozen=True)
class Limits:
    """What the app accepts (``genprop-app --max-frames/--max-side/--max-upload-mb``).

    Attributes:
        max_frames: frames per video; longer videos are refused, not cut.
        max_side: pixels of a frame's longer side (and of an edited frame's).
        max_upload_bytes: size of an uploaded file.
    """

    max_frames: int = 120
    max_side: int = 1024
    max_upload_bytes: int = 200 << 20


@dataclass(frozen=True)
class LoadedVideo:
    """A decoded input video: ``frames`` ``(T, H, W, 3)`` uint8 RGB at ``fps``."""

    frames: np.ndarray
    fps: float
    name: str


def _check_size(path: Path, limits: Limits) -> None:
    if not path.is_file():
        raise UploadError(f"{path.name}: not a file; upload a video or a zip of frames")
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise UploadError(
            f"{path.name}: {size / 2**20:.1f} MB is too large; the app takes files up to "
            f"{limits.max_upload_bytes / 2**20:.0f} MB"
        )


def _check_frame_size(name: str, w: int, h: int, limits: Limits) -> None:
    if max(w, h) > limits.max_side:
        raise UploadError(
            f"{name}: frames of {w}x{h} are too large; the app takes frames up to "
            f"{limits.max_side} pixels on their longer side"
        )


def _too_long(name: str, limits: Limits) -> UploadError:
    return UploadError(
        f"{name}: more than {limits.max_frames} frames is too long; trim the video to at most "
        f"{limits.max_frames} frames"
    )


def _video_file(path: Path, limits: Limits) -> LoadedVideo:
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise UploadError(f"{path.name}: has no video stream; upload an mp4, webm or mov")
            ctx = container.streams.video[0].codec_context
            _check_frame_size(path.name, ctx.width, ctx.height, limits)
        frames = []
        for frame in iter_frames(path, max_frames=limits.max_frames + 1):
            frames.append(frame)
            if len(frames) > limits.max_frames:
                raise _too_long(path.name, limits)
        fps = video_fps(path)
    except (av.FFmpegError, VideoReadError) as e:
        # The decoder's own message names the server's copy of the file: not shown.
        raise UploadError(f"{path.name}: not a readable video; upload an mp4, webm or mov") from e
    if not frames:
        raise UploadError(f"{path.name}: contains no frames")
    return LoadedVideo(np.stack(frames), fps, path.name)


def _decode_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limits: Limits):
    data = zf.read(info)
    try:
        with Image.open(io.BytesIO(data)) as im:
            _check_frame_size(f"{name}:{info.filename}", im.width, im.height, limits)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise UploadError(f"{name}:{info.filename}: not a readable PNG/JPG image") from e


def _frames_zip(path: Path, limits: Limits) -> LoadedVideo:
    try:
        with zipfile.ZipFile(path) as zf:
            members = sorted(
                (i for i in zf.infolist() if not i.is_dir()),
                key=lambda i: i.filename,
            )
            members = [i for i in members if Path(i.filename).suffix.lower() in FRAME_SUFFIXES]
            if not members:
                raise UploadError(f"{path.name}: no PNG/JPG frames in the zip")
            if len(members) > limits.max_frames:
                raise _too_long(path.name, limits)
            total = sum(i.file_size for i in members)
            if total > limits.max_upload_bytes:
                raise UploadError(
                    f"{path.name}: its frames unpack to {total / 2**20:.1f} MB, more than the "
                    f"{limits.max_upload_bytes / 2**20:.0f} MB the app takes"
                )
            frames = [_decode_member(zf, i, path.name, limits) for i in members]
    except zipfile.BadZipFile as e:
        raise UploadError(f"{path.name}: not a readable zip ({e})") from e
    if any(f.shape != frames[0].shape for f in frames):
        raise UploadError(f"{path.name}: the frames in the zip differ in size")
    return LoadedVideo(np.stack(frames), DEFAULT_FPS, path.name)


def load_video_upload(path: str | Path, limits: Limits) -> LoadedVideo:
    """Decode an uploaded video (mp4/webm/mov) or zip of PNG/JPG frames, within ``limits``.

    Raises:
        UploadError: wrong type, too large a file or frame, too many frames, unreadable.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (*VIDEO_SUFFIXES, ZIP_SUFFIX):
        raise UploadError(
            f"{path.name}: not a video; upload an mp4, webm or mov file or a zip of PNG/JPG frames"
        )
    _check_size(path, limits)
    if suffix == ZIP_SUFFIX:
        return _frames_zip(path, limits)
    return _video_file(path, limits)


def load_edited_frame(path: str | Path, video_size: tuple[int, int], limits: Limits) -> np.ndarray:
    """Read an edited first frame made elsewhere; it must match the video's size (H, W) or be
    larger in both sides (an extended canvas, for outpainting).

    Raises:
        UploadError: unreadable, too large, or of a size that does not fit the video.
    """
    path = Path(path)
    _check_size(path, limits)
    try:
        frame = read_image(path)
    except VideoReadError as e:
        raise UploadError(f"{path.name}: not a readable image; upload a PNG or JPG") from e
    H, W = frame.shape[:2]
    _check_frame_size(path.name, W, H, limits)
    h, w = video_size
    if h > H or w > W:
        raise UploadError(
            f"{path.name}: the edited frame is {W}x{H} but the video is {w}x{h}; give a "
            f"{w}x{h} frame (or a larger canvas, for outpainting)"
        )
    return frame


@dataclass(frozen=True)
class ToyCase:
    """A benchmark case ready to run: the input video, its edited first frame, task, prompt."""

    id: str
    video: LoadedVideo
    first: np.ndarray
    task: str
    prompt: str


def list_toy_cases(root: Path | None) -> list[CaseRef]:
    """The cases of a ``genprop-toyworld benchmark`` folder; none when it is missing or broken."""
    if root is None or not (root / "index.json").is_file():
        return []
    try:
        return list_cases(root)
    except CaseError:
        return []


def load_toy_case(ref: CaseRef, limits: Limits) -> ToyCase:
    """Load one case; a case longer or larger than ``limits`` is refused like an upload."""
    try:
        case = load_case(ref)
    except CaseError as e:
        raise UploadError(f"case {ref.id}: {e}") from e
    T, H, W = case.input.shape[:3]
    _check_frame_size(f"case {ref.id}", W, H, limits)
    if limits.max_frames < T:
        raise _too_long(f"case {ref.id}", limits)
    video = LoadedVideo(case.input, case.fps, ref.id)
    return ToyCase(ref.id, video, case.first, case.task, case.prompt)
