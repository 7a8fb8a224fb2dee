"""SA-V reader (Segment Anything Video, train-split layout; FORMATS.md §2.1).

Layout: ``<root>/sav_XXXXXX.mp4`` + ``sav_XXXXXX_manual.json`` (+ optional ``_auto.json``). The
24 fps video is annotated on every 4th frame: ``masklet[i][j]`` is the mask of masklet ``j`` on
video frame ``4*i``, so the annotated frames run at 6 fps. Frames are decoded straight from the
mp4 with PyAV (no JPEG extraction pass), upright: a display matrix is applied, and
``video_width`` x ``video_height`` must be the size as played (:mod:`contracts.frames`). Empty
RLEs and ``null`` both mean "absent"; numeric fields may be floats (``483.0``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from contracts.jsonfile import MAX_JSON_BYTES, JsonFileError, read_json
from datagen.readers.fields import (
    MAX_DURATION_S,
    FieldError,
    as_float,
    as_fps,
    as_id,
    as_int,
    brief,
)
from datagen.readers.frames import FrameError, check_geometry, iter_video_frames, probe_video
from datagen.readers.paths import PathError, confined_file, resolved_root
from datagen.readers.rle import RLE, MaskFormatError, mask_on_frame, rle_area, to_rle
from datagen.record import (
    BadVideo,
    DatasetError,
    ObjectTrack,
    Reader,
    VideoRecord,
    describe_dropped,
)

MAX_ANNOT_EVERY = 1000
MASKLET_KINDS = {"manual": ("manual",), "auto": ("auto",), "both": ("manual", "auto")}


def _sav_frames(
    path: Path,
    stride: int,
    size: tuple[int, int],
    total: int,
    video_id: str,
    indices: Sequence[int],
) -> Iterator[np.ndarray]:
    try:
        yield from iter_video_frames(path, [stride * i for i in indices], size=size, total=total)
    except FrameError as e:
        raise BadVideo(video_id, str(e)) from e


class SavReader(Reader):
    """Reads an SA-V train-split folder. The constructor only lists the masklet JSON files.

    Args:
        root: folder with the ``.mp4`` and ``_manual.json`` / ``_auto.json`` files.
        masklets: ``"manual"``, ``"auto"`` or ``"both"`` (object ids then get a
            ``manual_`` / ``auto_`` prefix; a missing ``_auto.json`` is allowed).
        annot_every: video frames per annotated frame (4 for SA-V: 24 fps video, 6 fps masks).
        max_json_bytes: refuse a larger masklet file before reading it.
        allow_links_outside: follow symbolic links that resolve outside the dataset
            folder (refused by default, see :mod:`datagen.readers.paths`).
    """

    source = "sav"

    def __init__(
        self,
        *,
        root: str | Path,
        masklets: str = "manual",
        annot_every: int = 4,
        max_json_bytes: int = MAX_JSON_BYTES,
        allow_links_outside: bool = False,
    ) -> None:
        self.root = Path(root)
        if masklets not in MASKLET_KINDS:
            raise DatasetError(
                f"source.masklets = {masklets!r}: expected one of {sorted(MASKLET_KINDS)}"
            )
        try:
            self.annot_every = as_int(
                annot_every, where="source.annot_every", minimum=1, maximum=MAX_ANNOT_EVERY
            )
        except FieldError as e:
            raise DatasetError(str(e)) from e
        if not self.root.is_dir():
            raise DatasetError(f"SA-V folder not found: {self.root}")
        self._root_real = resolved_root(self.root, allow_links_outside=allow_links_outside)
        self.kinds = MASKLET_KINDS[masklets]
        self.max_json_bytes = max_json_bytes
        suffix = f"_{self.kinds[0]}.json"
        self._ids = sorted(p.name[: -len(suffix)] for p in self.root.glob(f"*{suffix}"))
        if not self._ids:
            raise DatasetError(f"{self.root}: no '*{suffix}' masklet files (SA-V train layout)")

    def list_videos(self) -> list[str]:
        return list(self._ids)

    def load(self, video_id: str) -> VideoRecord:
        if video_id not in self._ids:
            raise BadVideo(video_id, f"no '{video_id}_{self.kinds[0]}.json' in {self.root}")
        docs: list[tuple[str, Path, dict[str, Any]]] = []
        for kind in self.kinds:
            path = self.root / f"{video_id}_{kind}.json"
            if kind == "auto" and len(self.kinds) == 2 and not os.path.lexists(path):
                continue  # SA-V has no _auto.json for some videos
            try:
                confined_file(path, self._root_real, what="SA-V masklet file")
                doc = read_json(path, what="SA-V masklet file", max_bytes=self.max_json_bytes)
            except (PathError, JsonFileError) as e:
                raise BadVideo(video_id, str(e)) from e
            if not isinstance(doc, dict):
                raise BadVideo(video_id, f"{path.name}: expected a JSON object at top level")
            docs.append((kind, path, doc))
        first_path, first = docs[0][1], docs[0][2]
        name = first_path.name
        for _, _, doc in docs:  # SAM2's loader also accepts the key "masks"
            if "masklet" not in doc and "masks" in doc:
                doc["masklet"] = doc["masks"]
        missing = [
            k
            for k in ("video_height", "video_width", "video_frame_count", "masklet")
            if k not in first
        ]
        if missing:
            raise BadVideo(video_id, f"{name}: missing required key(s) {missing}")
        try:
            as_int(first["video_frame_count"], where=f"{name}: 'video_frame_count'")  # not null
            check_geometry(
                first["video_width"],
                first["video_height"],
                first["video_frame_count"],
                where=name,
                names=("video_width", "video_height", "video_frame_count"),
            )
        except (FieldError, FrameError) as e:
            raise BadVideo(video_id, str(e)) from e
        width, height = int(first["video_width"]), int(first["video_height"])
        total = int(first["video_frame_count"])
        n_ann = (total - 1) // self.annot_every + 1
        mp4 = self.root / f"{video_id}.mp4"
        if not os.path.lexists(mp4):
            raise BadVideo(video_id, f"video file not found: {mp4}")
        try:
            vw, vh, v_frames, _ = probe_video(confined_file(mp4, self._root_real, what="video"))
            src_fps = self._source_fps(first, total, name)
        except (FieldError, FrameError, PathError) as e:
            raise BadVideo(video_id, str(e)) from e
        if (vw, vh) != (width, height):
            raise BadVideo(
                video_id,
                f"{mp4.name} is {vw}x{vh} but {name} declares video_width x video_height = "
                f"{width}x{height}",
            )
        if v_frames and v_frames != total:
            raise BadVideo(
                video_id,
                f"{mp4.name} has {v_frames} frames but {name} declares video_frame_count = {total}",
            )
        objects: list[ObjectTrack] = []
        dropped: list[tuple[str, str]] = []
        for kind, path, doc in docs:
            self._add_masklets(video_id, kind, path, doc, (width, height, n_ann), objects, dropped)
        if not objects:
            raise BadVideo(video_id, f"{name}: zero usable masklets ({describe_dropped(dropped)})")
        return VideoRecord(
            video_id=video_id,
            source=self.source,
            width=width,
            height=height,
            fps=src_fps / self.annot_every,
            frame_indices=tuple(self.annot_every * i for i in range(n_ann)),
            annotated=tuple(range(n_ann)),
            objects=tuple(objects),
            frames_fn=partial(_sav_frames, mp4, self.annot_every, (width, height), total, video_id),
            dropped=tuple(dropped),
        )

    @staticmethod
    def _source_fps(doc: dict[str, Any], total: int, name: str) -> float:
        """Frame rate of the mp4: ``video_frame_count / video_duration``, 24 without a
        duration (SA-V videos are 24 fps)."""
        if doc.get("video_duration") is None:
            return 24.0
        duration = as_float(
            doc["video_duration"],
            where=f"{name}: video_duration",
            minimum=0.0,
            maximum=MAX_DURATION_S,
        )
        return as_fps(total / duration, where=f"{name}: video_frame_count / video_duration (fps)")

    def _add_masklets(
        self,
        video_id: str,
        kind: str,
        path: Path,
        doc: dict[str, Any],
        geometry: tuple[int, int, int],
        objects: list[ObjectTrack],
        dropped: list[tuple[str, str]],
    ) -> None:
        width, height, n_ann = geometry
        masks = doc.get("masklet")
        if not isinstance(masks, list):
            raise BadVideo(video_id, f"{path.name}: missing required key 'masklet' (a list)")
        if len(masks) != n_ann:
            raise BadVideo(
                video_id,
                f"{path.name}: 'masklet' has {len(masks)} annotated frames but "
                f"video_frame_count annotated every {self.annot_every} frames gives {n_ann}",
            )
        ids = doc.get("masklet_id")
        if ids is not None and not isinstance(ids, list):
            raise BadVideo(video_id, f"{path.name}: masklet_id: expected a list, got {brief(ids)}")
        if ids is None:
            first = masks[0] if masks else []
            ids = list(range(len(first) if isinstance(first, list) else 0))
        try:
            oids = [as_id(mid, where=f"{path.name}: masklet_id[{j}]") for j, mid in enumerate(ids)]
        except FieldError as e:
            raise BadVideo(video_id, str(e)) from e
        if len(set(oids)) != len(oids):
            dup = next(o for o in oids if oids.count(o) > 1)
            raise BadVideo(video_id, f"{path.name}: masklet_id: duplicate id {dup!r}")
        num = len(ids)
        rles: list[list[RLE | None]] = [[] for _ in range(num)]
        for i, per_frame in enumerate(masks):
            if not isinstance(per_frame, list) or len(per_frame) != num:
                raise BadVideo(
                    video_id,
                    f"{path.name}: masklet[{i}] must list one mask per masklet ({num} masklets)",
                )
            for j, segm in enumerate(per_frame):
                try:
                    rles[j].append(to_rle(segm, height, width))
                except MaskFormatError as e:
                    raise BadVideo(video_id, f"{path.name}: masklet[{i}][{j}]: {e}") from e
        for j, (mid, oid) in enumerate(zip(ids, oids, strict=True)):
            if len(self.kinds) == 2:
                oid = f"{kind}_{oid}"
            present = tuple(i for i, r in enumerate(rles[j]) if rle_area(r) > 0)
            if not present:
                dropped.append((oid, "every mask is null or empty"))
                continue
            where = f"{path.name}: masklet[*][{j}] (masklet_id {brief(mid)})"
            objects.append(
                ObjectTrack(
                    object_id=oid,
                    category=None,
                    present=present,
                    mask_fn=partial(mask_on_frame, rles[j], video_id, where),
                )
            )
