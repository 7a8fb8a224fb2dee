"""YouTube-VOS / DAVIS folder reader (FORMATS.md §3).

Layout: ``<root>/JPEGImages[/<resolution>]/<seq>/<frame>.jpg|png`` and
``<root>/Annotations[/<resolution>]/<seq>/<frame>.png``. Mask PNGs are either

- mode ``P``: pixel value = object id, 0 = background, 255 = void (DAVIS 2017: "don't care"
  pixels, neither an object nor counted in any object's mask);
- binary mode ``L`` with values 0/255 (or mode ``1``): a single object with id 1;
- other greyscale ``L`` masks, by their values (:func:`greyscale_ids`): values only in
  ``1..63`` (plus 0 and 255 void) are an id map, as written by ``Image.fromarray(ids)``; any
  value in ``64..254`` means a soft or anti-aliased single-object mask (a resized or feathered
  0/255 mask), thresholded at 128 into object 1, never one object per grey level.

Frames are read as displayed (their EXIF orientation applied, :mod:`contracts.frames`), and so
are masks: DAVIS / YouTube-VOS masks are drawn on the frames as displayed and carry no EXIF, so a
phone JPEG stored sideways with an Orientation tag fits its mask, and the sequence's size is the
displayed size.

Every frame and mask must be a regular file inside ``JPEGImages[/<resolution>]`` or
``Annotations[/<resolution>]`` once links are followed (those folders themselves may be links,
e.g. to another disk); FIFOs and links out of them are refused (:mod:`datagen.readers.paths`).

Annotations may be sparse (YouTube-VOS valid, Cutie examples): only frames with a PNG are in
``VideoRecord.annotated``; ``mask_fn`` returns ``None`` elsewhere. Object ids are found by reading
the mask PNGs (ids only; masks are decoded again when asked for). The ids found in each PNG are
cached per process, keyed by the file's path, modification time and byte size
(:func:`scan_object_ids`), so loading a sequence again costs a directory listing and a ``stat``
per mask instead of decoding every PNG.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from contracts.frames import exif_orientation
from datagen.readers.fields import FieldError, as_fps, as_int
from datagen.readers.frames import (
    IMAGE_EXTENSIONS,
    MAX_VIDEO_FRAMES,
    FrameError,
    image_size,
    numbered_indices,
    open_image,
    read_rgb,
)
from datagen.readers.paths import PathError, confined_dir, list_files, resolved_root
from datagen.record import BadVideo, DatasetError, ObjectTrack, Reader, VideoRecord

VOID_ID = 255
# Greyscale masks with values only up to this are id maps; above it (below 255), soft masks.
GREY_ID_MAX = 63
MAX_MASK_SIZE_TOLERANCE = 64
MASK_MODES = ("P", "L", "1")
# Masks whose ids are remembered per process: ~200 bytes each, so at most ~20 MB.
ID_CACHE_SIZE = 100_000


def read_id_map(path: Path, size: tuple[int, int], tolerance: int = 2) -> np.ndarray:
    """Decode one mask PNG to an ``(H, W)`` uint8 id map (0 background, 255 void).

    Masks are drawn on the frames as displayed, and frames are read upright (EXIF orientation
    applied, :mod:`contracts.frames`), so a mask is read as displayed too: as stored, since
    annotation PNGs carry no EXIF, or turned by its own EXIF orientation when it has one.

    Args:
        path: the PNG.
        size: the frame size ``(width, height)``.
        tolerance: masks up to this many pixels off the frame size in each direction are
            padded with background / cropped at the right and bottom (real data has such
            masks: Cutie's ``judo/00005.png`` is 853x480 for 854x480 frames).

    Raises:
        FrameError: unsupported mode (named), wrong size, unreadable file.
    """
    with open_image(path) as im:
        if im.mode not in MASK_MODES:
            raise FrameError(
                f"{path}: unsupported mask PNG mode {im.mode!r}; expected palette 'P' (object id "
                "per pixel) or binary 'L'/'1' (0/255)"
            )
        orientation = exif_orientation(im)
        width, height = orientation.displayed_size(im.width, im.height)
        if abs(width - size[0]) > tolerance or abs(height - size[1]) > tolerance:
            raise FrameError(
                f"{path}: mask is {width}x{height}, expected {size[0]}x{size[1]} (frame size,"
                f" within {tolerance} px)"
            )
        try:
            arr = orientation.apply(np.asarray(im))
        except OSError as e:
            raise FrameError(f"{path}: cannot decode mask ({e})") from e
        mode = im.mode
    if mode == "1":
        ids = arr.astype(np.uint8)
    elif mode == "L":
        ids = greyscale_ids(arr)
    else:
        ids = arr.astype(np.uint8, copy=False)
    if ids.shape != (size[1], size[0]):
        fitted = np.zeros((size[1], size[0]), np.uint8)
        h, w = min(size[1], ids.shape[0]), min(size[0], ids.shape[1])
        fitted[:h, :w] = ids[:h, :w]
        ids = fitted
    return ids


def greyscale_ids(grey: np.ndarray) -> np.ndarray:
    """Object ids of a greyscale (``L``) mask, ``(H, W)`` uint8.

    - only values in ``1..GREY_ID_MAX`` besides 0 and 255: an id map (255 = void), returned
      as is;
    - otherwise, including plain 0/255 binary masks: one object, id 1, where the value is at
      least 128. Any value in ``GREY_ID_MAX+1 .. 254`` marks a soft or anti-aliased mask, whose
      grey levels are coverage, not ids.
    """
    soft = (grey > GREY_ID_MAX) & (grey < VOID_ID)
    if soft.any() or not ((grey > 0) & (grey < VOID_ID)).any():
        return (grey >= 128).astype(np.uint8)
    return grey.astype(np.uint8, copy=False)


@functools.lru_cache(maxsize=ID_CACHE_SIZE)
def _ids_in_mask(
    path: str, mtime_ns: int, nbytes: int, size: tuple[int, int], tolerance: int
) -> tuple[int, ...]:
    """Object ids (not background, not void) in one mask PNG; cached on the file's identity."""
    del mtime_ns, nbytes  # part of the cache key only: a changed file is scanned again
    ids = np.unique(read_id_map(Path(path), size, tolerance))
    return tuple(int(i) for i in ids if i not in (0, VOID_ID))


def scan_object_ids(
    mask_paths: Mapping[int, Path], size: tuple[int, int], tolerance: int
) -> dict[int, list[int]]:
    """``{object id: [frame indices where it is present]}`` from a video's mask PNGs.

    Each PNG is decoded once per process: the ids it holds are cached, keyed by
    ``(path, mtime, byte size, frame size, tolerance)``, so a rewritten file is scanned again.

    Args:
        mask_paths: frame index -> mask PNG.
        size: frame size ``(width, height)``.
        tolerance: see :func:`read_id_map`.

    Raises:
        FrameError: a mask is missing, unreadable, of an unsupported mode or of the wrong size.
    """
    present: dict[int, list[int]] = {}
    for i in sorted(mask_paths):
        path = mask_paths[i]
        try:
            st = os.stat(path)
        except OSError as e:
            raise FrameError(f"{path}: cannot read mask ({e.strerror})") from e
        for oid in _ids_in_mask(str(path), st.st_mtime_ns, st.st_size, size, tolerance):
            present.setdefault(oid, []).append(i)
    return present


def object_mask_at(
    mask_paths: dict[int, Path],
    object_id: int,
    size: tuple[int, int],
    tolerance: int,
    video_id: str,
    i: int,
) -> np.ndarray | None:
    """``object_id``'s ``(H, W)`` bool mask on frame ``i``; ``None`` when absent or unannotated.

    Raises:
        BadVideo: the mask PNG is unusable (named in the reason).
    """
    path = mask_paths.get(i)
    if path is None:
        return None
    try:
        mask = read_id_map(path, size, tolerance) == object_id
    except FrameError as e:
        raise BadVideo(video_id, str(e)) from e
    return mask if mask.any() else None


def _frames_at(
    paths: Sequence[Path], size: tuple[int, int], video_id: str, indices: Sequence[int]
) -> Iterator[np.ndarray]:
    for i in indices:
        try:
            yield read_rgb(paths[i], size=size)
        except FrameError as e:
            raise BadVideo(video_id, str(e)) from e


def check_tolerance(value: object) -> int:
    """The ``mask_size_tolerance`` option, an integer in ``0..MAX_MASK_SIZE_TOLERANCE``.

    Raises:
        DatasetError: any other value.
    """
    try:
        return as_int(
            value, where="source.mask_size_tolerance", minimum=0, maximum=MAX_MASK_SIZE_TOLERANCE
        )
    except FieldError as e:
        raise DatasetError(str(e)) from e


class VosReader(Reader):
    """Reads a YouTube-VOS / DAVIS folder; the constructor only lists the sequences.

    Args:
        root: folder holding ``JPEGImages`` and ``Annotations``.
        resolution: DAVIS resolution level (``"480p"``, ``"Full-Resolution"``); when ``None``
            and ``JPEGImages/480p`` exists, ``"480p"`` is used.
        fps: frame rate to record; ``None`` (unknown) by default, since VOS folders do not say.
        mask_size_tolerance: masks at most this many pixels off the frame size are padded or
            cropped (see :func:`read_id_map`); larger differences make the video unusable.
        allow_links_outside: follow symbolic links that resolve outside the dataset
            folder (refused by default, see :mod:`datagen.readers.paths`).
    """

    source = "vos"

    def __init__(
        self,
        *,
        root: str | Path,
        resolution: str | None = None,
        fps: float | None = None,
        mask_size_tolerance: int = 2,
        allow_links_outside: bool = False,
    ) -> None:
        self.root = Path(root)
        self.tolerance = check_tolerance(mask_size_tolerance)
        try:
            self.fps = None if fps is None else as_fps(fps, where="source.fps")
        except FieldError as e:
            raise DatasetError(str(e)) from e
        if not self.root.is_dir():
            raise DatasetError(f"VOS folder not found: {self.root}")
        if resolution is None and (self.root / "JPEGImages" / "480p").is_dir():
            resolution = "480p"
        sub = Path(resolution) if resolution else Path()
        if resolution and (sub.is_absolute() or ".." in sub.parts):
            raise DatasetError(f"source.resolution = {resolution!r}: expected a folder name")
        self.images = self.root / "JPEGImages" / sub
        self.masks = self.root / "Annotations" / sub
        for d in (self.images, self.masks):
            if not d.is_dir():
                raise DatasetError(f"{self.root}: missing folder {d} (expected VOS/DAVIS layout)")
        self._images_real = resolved_root(self.images, allow_links_outside=allow_links_outside)
        self._masks_real = resolved_root(self.masks, allow_links_outside=allow_links_outside)
        self._seqs = sorted(d.name for d in self.images.iterdir() if d.is_dir())
        if not self._seqs:
            raise DatasetError(f"{self.images}: no sequence folders")

    def list_videos(self) -> list[str]:
        return list(self._seqs)

    def load(self, video_id: str) -> VideoRecord:
        if video_id not in self._seqs:
            raise BadVideo(video_id, f"no folder {self.images / video_id}")
        ann_dir = self.masks / video_id
        if not ann_dir.is_dir():
            raise BadVideo(video_id, f"no annotation folder {ann_dir}")
        try:
            seq_dir = confined_dir(self.images / video_id, self._images_real, what="frames folder")
            frames = list_files(seq_dir, self._images_real, IMAGE_EXTENSIONS, what="frame")
            confined_dir(ann_dir, self._masks_real, what="annotation folder")
            masks = list_files(ann_dir, self._masks_real, (".png",), what="mask")
        except PathError as e:
            raise BadVideo(video_id, str(e)) from e
        if not frames:
            raise BadVideo(video_id, f"{self.images / video_id}: no image frames")
        if len(frames) > MAX_VIDEO_FRAMES:
            raise BadVideo(video_id, f"{len(frames)} frames exceeds the limit {MAX_VIDEO_FRAMES}")
        try:
            size = image_size(frames[0])
        except FrameError as e:
            raise BadVideo(video_id, str(e)) from e
        by_stem = {p.stem: i for i, p in enumerate(frames)}
        mask_paths: dict[int, Path] = {}
        for m in masks:
            if m.stem not in by_stem:
                raise BadVideo(
                    video_id,
                    f"{m}: mask has no matching frame in {self.images / video_id} "
                    f"({len(frames)} frames): masks and frames do not correspond",
                )
            mask_paths[by_stem[m.stem]] = m
        if not mask_paths:
            raise BadVideo(video_id, f"{ann_dir}: no mask PNGs")
        objects = png_mask_objects(video_id, ann_dir, mask_paths, size, self.tolerance)
        return VideoRecord(
            video_id=video_id,
            source=self.source,
            width=size[0],
            height=size[1],
            fps=self.fps,
            frame_indices=numbered_indices([p.stem for p in frames]),
            annotated=tuple(sorted(mask_paths)),
            objects=objects,
            frames_fn=partial(_frames_at, frames, size, video_id),
        )


def png_mask_objects(
    video_id: str,
    mask_dir: Path,
    mask_paths: dict[int, Path],
    size: tuple[int, int],
    tolerance: int,
) -> tuple[ObjectTrack, ...]:
    """One lazy :class:`ObjectTrack` per object id found in id-per-pixel mask PNGs.

    Args:
        video_id: the video, for error messages.
        mask_dir: the mask folder, for error messages.
        mask_paths: annotated-frame index -> mask PNG.
        size: ``(width, height)`` of the frames.
        tolerance: masks may be this many pixels off the frame size (padded or cropped).

    Raises:
        BadVideo: a mask cannot be read, or no object is present on any frame.
    """
    try:
        present = scan_object_ids(mask_paths, size, tolerance)
    except FrameError as e:
        raise BadVideo(video_id, str(e)) from e
    if not present:
        raise BadVideo(video_id, f"{mask_dir}: zero usable objects (every mask is empty)")
    return tuple(
        ObjectTrack(
            object_id=str(oid),
            category=None,
            present=tuple(present[oid]),
            mask_fn=partial(object_mask_at, mask_paths, oid, size, tolerance, video_id),
        )
        for oid in sorted(present)
    )
