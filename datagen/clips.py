"""Clip sampling: which frames of a video a sample uses, and how they are resized.

A clip is ``frames`` annotated frames taken every ``stride`` annotated frames (stride 1 = the
annotated rate), starting at a frame where the sample's main object is present (so the recipe's
"instance present in the first frame" rule holds by construction when possible). Frames are
decoded lazily, one at a time, and resized with their aspect ratio preserved so that they cover
the target size, then cropped (random or centre crop, the same window for every frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from datagen.record import Clip, SkipSample, VideoRecord


def clip_starts(record: VideoRecord, *, frames: int, stride: int) -> list[int]:
    """Annotated-frame indices where a ``frames``-frame clip at ``stride`` can start.

    Every clip frame must be annotated (sparse VOS annotations restrict the choices).
    """
    annotated = set(record.annotated)
    last = record.num_frames - (frames - 1) * stride
    return [
        s for s in range(max(last, 0)) if all(s + k * stride in annotated for k in range(frames))
    ]


def can_cut_clip(record: VideoRecord, *, frames: int, strides: Sequence[int]) -> bool:
    """Whether some object of ``record`` is present where a clip of this length can start."""
    present = {i for o in record.objects for i in o.present}
    starts = (s for k in strides for s in clip_starts(record, frames=frames, stride=k))
    return any(s in present for s in starts)


def choose_frames(
    record: VideoRecord,
    rng: np.random.Generator,
    *,
    frames: int,
    strides: Sequence[int],
    anchor_object: str | None,
) -> tuple[list[int], int]:
    """Pick annotated-frame indices for a clip.

    Every clip frame must be annotated (sparse VOS annotations restrict the choices). Starts
    where ``anchor_object`` is present are preferred; a stride is drawn from ``strides`` among
    those that fit the video.

    Returns:
        ``(indices, stride)``: ``frames`` annotated-frame indices and the stride used.

    Raises:
        SkipSample: the video is too short for any stride, too few of its frames are annotated,
            or the object is never present at a usable start (``kind`` says which).
    """
    present = None
    if anchor_object is not None:
        track = {o.object_id: o for o in record.objects}.get(anchor_object)
        if track is None:
            raise SkipSample(
                f"object {anchor_object!r} not in video {record.video_id!r}", "no_objects"
            )
        present = set(track.present)
    fitting = [s for s in strides if (frames - 1) * s < record.num_frames]
    if not fitting:
        raise SkipSample(
            f"video has {record.num_frames} annotated frames, a {frames}-frame clip needs "
            f"{(frames - 1) * min(strides) + 1}",
            "clip_longer_than_video",
        )
    any_window = False
    for stride in rng.permutation(fitting):
        stride = int(stride)
        windows = clip_starts(record, frames=frames, stride=stride)
        any_window = any_window or bool(windows)
        starts = [s for s in windows if present is None or s in present]
        if starts:
            start = int(rng.choice(starts))
            return [start + k * stride for k in range(frames)], stride
    if not any_window:
        raise SkipSample(
            f"no {frames} annotated frames in a row (video has {len(record.annotated)} "
            f"annotated of {record.num_frames})",
            "too_few_annotated_frames",
        )
    raise SkipSample(
        f"no {frames}-frame window starts with object {anchor_object!r} present", "object_absent"
    )


def resize_cover_crop(
    img: np.ndarray, size: tuple[int, int], offset: tuple[float, float], *, nearest: bool = False
) -> np.ndarray:
    """Aspect-preserving resize so ``img`` covers ``size = (H, W)``, then crop.

    Args:
        img: ``(h, w, ...)`` array.
        size: target ``(H, W)``.
        offset: crop position in [0, 1] along y and x (0.5 = centre).
        nearest: nearest-neighbour interpolation (masks) instead of area/linear (frames).
    """
    H, W = size
    h, w = img.shape[:2]
    scale = max(H / h, W / w)
    nh, nw = max(H, round(h * scale)), max(W, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        interp = cv2.INTER_NEAREST if nearest else interp
        img = cv2.resize(img, (nw, nh), interpolation=interp)
    y0, x0 = round((nh - H) * offset[0]), round((nw - W) * offset[1])
    return img[y0 : y0 + H, x0 : x0 + W]


def sample_clip(
    record: VideoRecord,
    rng: np.random.Generator,
    *,
    frames: int,
    size: tuple[int, int],
    strides: Sequence[int] = (1,),
    crop: str = "random",
    anchor_object: str | None = None,
    object_ids: Sequence[str] = (),
    mask_objects: Sequence[str] | None = None,
) -> Clip:
    """Cut, decode, resize and crop a clip of ``record``.

    Args:
        record: the video.
        rng: the sample's generator.
        frames: clip length ``T``.
        size: output ``(H, W)``.
        strides: candidate strides in annotated frames.
        crop: ``"random"`` or ``"center"``.
        anchor_object: object that must be present on the first clip frame (``None``: any start).
        object_ids: the objects the sample is about (stored on the clip, first = main).
        mask_objects: objects whose masks are decoded (``None``: all; masks cost decode time).

    Returns:
        A :class:`Clip` with ``(T, H, W, 3)`` frames and ``(T, H, W)`` masks of every object.
    """
    if crop not in ("random", "center"):
        raise ValueError(f"clip.crop must be 'random' or 'center', got {crop!r}")
    indices, stride = choose_frames(
        record, rng, frames=frames, strides=strides, anchor_object=anchor_object
    )
    offset = (0.5, 0.5) if crop == "center" else (float(rng.random()), float(rng.random()))
    out = np.empty((frames, *size, 3), np.uint8)
    t = -1
    for t, frame in enumerate(record.frames(indices)):
        if t >= frames:
            raise ValueError(f"video {record.video_id!r}: reader yielded more than {frames} frames")
        if frame.shape[:2] != (record.height, record.width):
            raise ValueError(
                f"video {record.video_id!r}: frame {indices[t]} is "
                f"{frame.shape[1]}x{frame.shape[0]}, record says {record.width}x{record.height}"
            )
        out[t] = resize_cover_crop(frame, size, offset)
    if t + 1 != frames:
        raise ValueError(f"video {record.video_id!r}: reader yielded {t + 1} of {frames} frames")
    masks: dict[str, np.ndarray] = {}
    wanted = None if mask_objects is None else set(mask_objects)
    for track in record.objects:
        if wanted is not None and track.object_id not in wanted:
            continue
        m = np.zeros((frames, *size), bool)
        for t, i in enumerate(indices):
            raw = track.mask(i)
            if raw is not None:
                m[t] = resize_cover_crop(raw.astype(np.uint8), size, offset, nearest=True) > 0
        masks[track.object_id] = m
    fps = record.fps / stride if record.fps else None
    return Clip(
        video_id=record.video_id,
        source=record.source,
        frames=out,
        masks=masks,
        categories={o.object_id: o.category for o in record.objects},
        frame_indices=[int(record.frame_indices[i]) for i in indices],
        fps=fps,
        object_ids=list(object_ids),
    )
