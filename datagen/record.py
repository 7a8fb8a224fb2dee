"""The record types of the pipeline: what a dataset reader produces and what is cut from it.

A reader turns a dataset on disk into :class:`VideoRecord` objects. Records are cheap: they hold
indices and callables, and decode frames and masks only when asked, so a reader can stream a
dataset of any size. Clip sampling (:mod:`datagen.clips`) decodes a stretch of a record into a
:class:`Clip`, the pixels that augmentation and the pair recipes work on.

Frame indexing: a record exposes its *annotated* frames ``0 .. num_frames-1``. ``frame_indices[i]``
is the index of annotated frame ``i`` in the source video (SA-V: ``4 * i``; YouTube-VIS and VOS
folders: the frame file's number when the names are increasing numbers, ``00005.jpg`` → 5,
else the file order).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

# Largest frame side a record may declare (readers bound the pixel count far lower).
MAX_SIDE = 1 << 16
MaskFn = Callable[[int], "np.ndarray | None"]
FramesFn = Callable[[Sequence[int]], Iterator[np.ndarray]]


class DatasetError(Exception):
    """The whole input is unusable (missing annotation file, bad JSON, ...). Fatal for a job."""


class BadVideo(Exception):  # noqa: N818 - the established name readers and the dry run use
    """One video is unusable; a batch job skips it, logs it and counts it."""

    def __init__(self, video_id: str, reason: str) -> None:
        super().__init__(f"video {video_id!r}: {reason}")
        self.video_id = video_id
        self.reason = reason


# Skip kinds: the run summary counts skips per kind (see ``SKIP_KINDS`` for their wording).
SKIP_KINDS = {
    "clip_longer_than_video": "clip longer than the video",
    "too_few_annotated_frames": "too few consecutive annotated frames for a clip",
    "object_absent": "object absent from the first frame of every clip",
    "no_objects": "video has no usable object",
    "area_out_of_range": "object area outside filters.min_area..max_area",
    "recipe": "recipe could not apply to the clip",
}


class SkipSample(Exception):  # noqa: N818 - a control-flow signal, not an error
    """This sample cannot be built from this clip (instance absent, area out of range, ...).

    Args:
        message: what went wrong, for ``errors.jsonl``.
        kind: a key of :data:`SKIP_KINDS`, for the per-reason counts of the run summary.
    """

    def __init__(self, message: str, kind: str = "recipe") -> None:
        super().__init__(message)
        self.kind = kind if kind in SKIP_KINDS else "recipe"


@dataclass(frozen=True)
class ObjectTrack:
    """One object instance followed through a video.

    Attributes:
        object_id: id unique within the video (the dataset's own id, as a string).
        category: category name, or ``None`` when the source has no categories.
        present: annotated-frame indices where the object has a non-empty mask.
        mask_fn: ``mask_fn(i)`` decodes the mask on annotated frame ``i``: ``(H, W)`` bool, or
            ``None`` when the object is absent there or the frame is not annotated.
    """

    object_id: str
    category: str | None
    present: tuple[int, ...]
    mask_fn: MaskFn = field(repr=False, compare=False)

    def mask(self, i: int) -> np.ndarray | None:
        """Mask on annotated frame ``i``, ``(H, W)`` bool, or ``None`` when absent."""
        return self.mask_fn(i)


@dataclass(frozen=True)
class VideoRecord:
    """One video of any source.

    Attributes:
        video_id: the dataset's id for the video.
        source: ``"ytvis"``, ``"sav"``, ``"vos"`` or ``"toyworld"``.
        width, height: frame size in pixels.
        fps: frame rate of the annotated frames, ``None`` when the source does not say.
        frame_indices: ``frame_indices[i]`` = source-video frame index of annotated frame ``i``.
        annotated: annotated-frame indices that carry masks (all of them, except for sparse VOS).
        objects: the usable object tracks.
        frames_fn: ``frames_fn(indices)`` yields ``(H, W, 3)`` uint8 RGB frames for the given
            annotated-frame indices, in the order given, decoding lazily.
        dropped: ``(object_id, reason)`` for each track of the video that was left out (crowd
            regions, tracks with no mask), so that nothing is lost silently.

    ``mask_fn`` and ``frames_fn`` decode on demand and raise :class:`BadVideo` when the data on
    disk turns out to be unusable (missing or corrupt frame file, truncated video, bad RLE).
    """

    video_id: str
    source: str
    width: int
    height: int
    fps: float | None
    frame_indices: tuple[int, ...]
    annotated: tuple[int, ...]
    objects: tuple[ObjectTrack, ...]
    frames_fn: FramesFn = field(repr=False, compare=False)
    dropped: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        """Last line of defence behind the readers' field checks: a record with absurd numbers
        never leaves a reader (readers name the file and field first)."""
        why = _record_problem(self)
        if why is not None:
            raise BadVideo(str(self.video_id), f"record from {self.source!r}: {why}")

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)

    def frames(self, indices: Sequence[int] | None = None) -> Iterator[np.ndarray]:
        """Stream ``(H, W, 3)`` uint8 RGB frames (all annotated frames when ``indices`` is None)."""
        return self.frames_fn(range(self.num_frames) if indices is None else indices)

    def frame(self, i: int) -> np.ndarray:
        return next(iter(self.frames_fn([i])))


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _record_problem(r: VideoRecord) -> str | None:
    """Why a record's numbers are unusable, or ``None``."""
    for name in ("width", "height"):
        v = getattr(r, name)
        if not _is_int(v) or not 0 < v <= MAX_SIDE:
            return f"{name} = {v!r:.40}, expected an integer in 1..{MAX_SIDE}"
    if r.fps is not None and (
        not isinstance(r.fps, int | float) or not math.isfinite(r.fps) or r.fps <= 0
    ):
        return f"fps = {r.fps!r:.40}, expected a finite positive number or None"
    idx = r.frame_indices
    if not idx or not all(_is_int(i) and i >= 0 for i in idx):
        return "frame_indices must be one or more non-negative integers"
    if any(a >= b for a, b in itertools.pairwise(idx)):
        return "frame_indices must be strictly increasing"
    if not all(_is_int(i) and 0 <= i < len(idx) for i in r.annotated):
        return f"annotated holds indices outside 0..{len(idx) - 1}"
    return None


def describe_dropped(dropped: Sequence[tuple[str, str]]) -> str:
    """One line listing dropped objects, for messages: ``"object 3: reason; object 5: ..."``."""
    return "; ".join(f"object {oid}: {why}" for oid, why in dropped) or "no object tracks"


class Reader(ABC):
    """Interface of a dataset reader: list the videos, then load one at a time.

    ``list_videos`` is cheap; ``load`` builds a :class:`VideoRecord` without decoding pixels and
    raises :class:`BadVideo` when that video is unusable. A reader raises :class:`DatasetError`
    from its constructor when the whole input is unusable. A reader may also expose
    ``warnings: list[str]``, index-level notes (e.g. a track naming an unknown video) that the
    dry run reports.
    """

    source: str = ""

    @abstractmethod
    def list_videos(self) -> list[str]:
        """Ids of every video, in a fixed order."""

    @abstractmethod
    def load(self, video_id: str) -> VideoRecord:
        """The record of one video (no pixels decoded); raises :class:`BadVideo`."""

    def __iter__(self) -> Iterator[VideoRecord | BadVideo]:
        for vid in self.list_videos():
            try:
                yield self.load(vid)
            except BadVideo as e:
                yield e


@dataclass
class Clip:
    """A clip cut from one video, resized and cropped to the training size.

    Attributes:
        video_id: the source video's id.
        source: the source dataset name (``"ytvis"``, ``"toyworld"``, ...).
        frames: ``(T, H, W, 3)`` uint8 RGB.
        masks: object id -> ``(T, H, W)`` bool instance masks (all objects of the video).
        categories: object id -> category name or ``None``.
        frame_indices: source-video frame index of each clip frame (length ``T``).
        fps: frame rate of the clip (annotated rate divided by the stride), ``None`` if unknown.
        object_ids: the objects the plan selected for this sample, most important first.
    """

    video_id: str
    source: str
    frames: np.ndarray
    masks: dict[str, np.ndarray]
    categories: dict[str, str | None]
    frame_indices: list[int]
    fps: float | None
    object_ids: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)``."""
        T, H, W, _ = self.frames.shape
        return T, H, W

    def present_in_first(self, object_id: str) -> bool:
        """Whether the object has a non-empty mask on the first clip frame."""
        return bool(self.masks[object_id][0].any())
