"""YouTube-VIS reader (2019 / 2021 / 2022, OVIS, and the built-in toy world).

Layout (FORMATS.md §1): one JSON with ``videos``, ``annotations`` (one entry per object track) and
``categories``; frames at ``<frames>/<file_names[i]>``. Masks are list-counts RLE, string-counts RLE
or polygons, ``null`` where the object is absent; ``areas`` are not trusted (recomputed from masks).

Frames are read as displayed (EXIF orientation applied, :mod:`contracts.frames`): the video's
``width`` / ``height`` and its masks are those of the displayed frames.

Ids: a record's ``video_id`` is the video entry's ``id`` (as a string), or its ``name`` when it
has one; an object's id is the track ``id``, or its ``object_id`` when it has one (the toy world
writes both extensions so that ids match its ground-truth folders).

Timing: YouTube-VIS frame files are every 5th frame of a 30 fps source, so the annotated frames
run at 6 fps; ``frame_indices`` come from the file numbers (``00005`` → 5) when numeric.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from contracts.jsonfile import MAX_JSON_BYTES, JsonFileError, read_json
from datagen.readers.fields import MAX_ID_CHARS, FieldError, as_fps, as_id, as_int, brief
from datagen.readers.frames import (
    FrameError,
    check_geometry,
    find_image,
    numbered_indices,
    read_rgb,
)
from datagen.readers.paths import PathError, confined_file, resolved_root, safe_join
from datagen.readers.rle import RLE, MaskFormatError, mask_on_frame, rle_area, to_rle
from datagen.record import (
    BadVideo,
    DatasetError,
    ObjectTrack,
    Reader,
    VideoRecord,
    describe_dropped,
)


def _frames_at(
    paths: Sequence[Path],
    root: Path,
    size: tuple[int, int],
    video_id: str,
    where: str,
    indices: Sequence[int],
) -> Iterator[np.ndarray]:
    for i in indices:
        found = find_image(paths[i])
        if found is None:
            raise BadVideo(
                video_id,
                f"{where}.file_names[{i}]: frame file {paths[i]} not found "
                "(also tried the other image extensions)",
            )
        try:
            yield read_rgb(confined_file(found, root, what="frame"), size=size)
        except (FrameError, PathError) as e:
            raise BadVideo(video_id, f"{where}.file_names[{i}]: {e}") from e


def video_key(video: object, index: int) -> str:
    """The record id of ``videos[index]``: its ``name`` when it has one (toy world extension,
    the frame folder name), else its numeric ``id`` as a string; ``"videos[<index>]"`` when
    neither is a usable id (loading it then says why)."""
    if isinstance(video, dict):
        for key in ("name", "id"):
            if video.get(key) is not None:
                try:
                    return as_id(video[key], where=key)
                except FieldError:
                    return f"videos[{index}]"
    return f"videos[{index}]"


def _is_crowd(value: object, where: str) -> bool:
    """The ``iscrowd`` flag: 0/1 (ints, integer floats, booleans or "0"/"1"); absent means 0."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if value in ("0", "1"):
        return value == "1"
    return as_int(value, where=f"{where}.iscrowd", minimum=0, maximum=1) == 1


class YtvisReader(Reader):
    """Reads a YouTube-VIS-layout dataset. The constructor parses the JSON index only.

    Every field a record is built from is checked when the video is loaded (ids, sizes, frame
    rate, file names, segmentations); a bad value makes that video a :class:`BadVideo` naming
    the file and field. Frame files must be regular files inside ``frames`` once links are
    followed (:mod:`datagen.readers.paths`).

    Args:
        annotations: the annotation JSON file.
        frames: the folder that ``file_names`` are relative to (the split's ``JPEGImages``).
        fps: frame rate of the annotated frames when a video entry has no ``fps`` field.
        source_name: ``source`` written in the records (``"ytvis"`` or ``"toyworld"``).
        max_json_bytes: refuse a larger annotation file before reading it.
        allow_links_outside: follow symbolic links that resolve outside the dataset
            folder (refused by default, see :mod:`datagen.readers.paths`).
    """

    def __init__(
        self,
        *,
        annotations: str | Path,
        frames: str | Path,
        fps: float = 6.0,
        source_name: str = "ytvis",
        max_json_bytes: int = MAX_JSON_BYTES,
        allow_links_outside: bool = False,
    ) -> None:
        self.source = source_name
        self.annotations = Path(annotations)
        self.frames_root = Path(frames)
        self.warnings: list[str] = []
        try:
            self.fps = as_fps(fps, where="source.fps")
            data = read_json(self.annotations, max_bytes=max_json_bytes)
        except (FieldError, JsonFileError) as e:
            raise DatasetError(str(e)) from e
        name = self.annotations.name
        if not isinstance(data, dict):
            raise DatasetError(
                f"{self.annotations}: expected a JSON object at top level, got "
                f"{type(data).__name__}"
            )
        videos = data.get("videos")
        if not isinstance(videos, list):
            raise DatasetError(f"{self.annotations}: missing required key 'videos' (a list)")
        tracks = data.get("annotations", [])
        if not isinstance(tracks, list):
            raise DatasetError(f"{self.annotations}: 'annotations' must be a list of tracks")
        categories = data.get("categories") or []
        if not isinstance(categories, list):
            raise DatasetError(f"{self.annotations}: 'categories' must be a list")
        if not self.frames_root.is_dir():
            raise DatasetError(f"frames folder not found: {self.frames_root}")
        self._root_real = resolved_root(self.frames_root, allow_links_outside=allow_links_outside)
        self._categories, self._bad_categories = self._index_categories(categories)
        # record id -> (index in videos, entry); ids shared by several entries are kept (the
        # first under the id, the others as "videos[i]") and all of them are refused at load.
        self._videos: dict[str, tuple[int, Any]] = {}
        self._clash: dict[str, str] = {}  # record id -> why it is unusable (duplicate ids)
        by_json_id: dict[str, list[str]] = {}  # videos[].id -> record ids
        for i, v in enumerate(videos):
            vid = video_key(v, i)
            if vid in self._videos:
                why = f"videos[{self._videos[vid][0]}] and videos[{i}] share the id {vid!r}"
                self._clash[vid] = why
                vid = f"videos[{i}]"
                self._clash[vid] = why
            self._videos[vid] = (i, v)
            if isinstance(v, dict) and "id" in v:
                with contextlib.suppress(FieldError):  # a bad id is refused at load
                    by_json_id.setdefault(as_id(v["id"], where="id"), []).append(vid)
        for jid, vids in by_json_id.items():
            if len(vids) > 1:
                for vid in vids:
                    self._clash[vid] = (
                        f"{len(vids)} entries of 'videos' share the id {jid!r}; their tracks "
                        "cannot be told apart"
                    )
        self._tracks: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for i, t in enumerate(tracks):
            if not isinstance(t, dict) or "video_id" not in t:
                self.warnings.append(f"{name}: annotations[{i}] has no 'video_id'; ignored")
                continue
            try:
                jid = as_id(t["video_id"], where=f"{name}: annotations[{i}].video_id")
            except FieldError as e:
                self.warnings.append(f"{e}; ignored")
                continue
            if jid not in by_json_id:
                self.warnings.append(
                    f"{name}: annotations[{i}].video_id = {brief(t['video_id'])} is not in "
                    "'videos'; ignored"
                )
                continue
            for vid in by_json_id[jid]:
                self._tracks.setdefault(vid, []).append((i, t))

    def _index_categories(self, categories: list[Any]) -> tuple[dict[str, str], dict[str, str]]:
        """``({id: name}, {id: why unusable})`` from ``categories``; a track naming an unusable
        category (bad name, duplicate id) is refused at load."""
        name = self.annotations.name
        names: dict[str, str] = {}
        bad: dict[str, str] = {}
        for k, c in enumerate(categories):
            where = f"{name}: categories[{k}]"
            if not isinstance(c, dict):
                self.warnings.append(f"{where}: expected an object, got {brief(c)}; ignored")
                continue
            try:
                cid = as_id(c.get("id"), where=f"{where}.id")
            except FieldError as e:
                self.warnings.append(f"{e}; ignored")
                continue
            label = c.get("name")
            if not isinstance(label, str) or not label.strip() or len(label) > MAX_ID_CHARS:
                bad[cid] = f"{where}.name: expected a category name, got {brief(label)}"
            elif cid in names or cid in bad:
                bad[cid] = f"{where}: duplicate category id {cid!r}"
            else:
                names[cid] = label
        for cid in bad:
            names.pop(cid, None)
        return names, bad

    def list_videos(self) -> list[str]:
        return list(self._videos)

    def load(self, video_id: str) -> VideoRecord:
        if video_id not in self._videos:
            raise BadVideo(video_id, f"not in {self.annotations}")
        idx, v = self._videos[video_id]
        where = f"{self.annotations.name}: videos[{idx}]"
        if video_id in self._clash:
            raise BadVideo(video_id, f"{where}: {self._clash[video_id]}")
        if not isinstance(v, dict):
            raise BadVideo(video_id, f"{where}: expected an object, got {brief(v)}")
        missing = [k for k in ("id", "width", "height", "file_names") if k not in v]
        if missing:
            raise BadVideo(video_id, f"{where}: missing required key(s) {missing}")
        names = v["file_names"]
        if not isinstance(names, list) or not names:
            raise BadVideo(video_id, f"{where}.file_names: expected a non-empty list of paths")
        try:
            for key in ("id", "name"):
                if key in v and (key == "id" or v[key] is not None):
                    as_id(v[key], where=f"{where}.{key}")
            check_geometry(v["width"], v["height"], len(names), where=where)
            paths = [
                safe_join(self.frames_root, n, where=f"{where}.file_names[{j}]")
                for j, n in enumerate(names)
            ]
            n = len(names)
            if "length" in v and as_int(v["length"], where=f"{where}.length") != n:
                raise FieldError(f"{where}.length = {v['length']} but file_names lists {n} frames")
            fps = self.fps if v.get("fps") is None else as_fps(v["fps"], where=f"{where}.fps")
        except (FieldError, FrameError, PathError) as e:
            raise BadVideo(video_id, str(e)) from e
        width, height = int(v["width"]), int(v["height"])
        tracks = self._tracks.get(video_id)
        if not tracks:
            raise BadVideo(
                video_id,
                f"{where}: no ground-truth tracks in 'annotations' (valid/test splits carry none)",
            )
        objects, dropped = self._tracks_to_objects(video_id, tracks, width, height, n)
        if not objects:
            raise BadVideo(video_id, f"{where}: zero usable objects ({describe_dropped(dropped)})")
        stems = [Path(name).stem for name in names]
        return VideoRecord(
            video_id=video_id,
            source=self.source,
            width=width,
            height=height,
            fps=fps,
            frame_indices=numbered_indices(stems),
            annotated=tuple(range(n)),
            objects=tuple(objects),
            frames_fn=partial(_frames_at, paths, self._root_real, (width, height), video_id, where),
            dropped=tuple(dropped),
        )

    def _tracks_to_objects(
        self, video_id: str, tracks: list[tuple[int, dict[str, Any]]], w: int, h: int, n: int
    ) -> tuple[list[ObjectTrack], list[tuple[str, str]]]:
        objects: list[ObjectTrack] = []
        dropped: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for ti, t in tracks:
            where = f"{self.annotations.name}: annotations[{ti}]"
            key = "object_id" if t.get("object_id") is not None else "id"
            try:
                oid = as_id(t.get(key, ti), where=f"{where}.{key}")
                crowd = _is_crowd(t.get("iscrowd"), where)
                category = self._category(t.get("category_id"), where)
            except FieldError as e:
                raise BadVideo(video_id, str(e)) from e
            if oid in seen:
                raise BadVideo(
                    video_id,
                    f"{where}: object id {oid!r} is also used by annotations[{seen[oid]}] of "
                    "the same video",
                )
            seen[oid] = ti
            if crowd:
                dropped.append((oid, "iscrowd=1 (crowd region, not an instance)"))
                continue
            segs = t.get("segmentations")
            if not isinstance(segs, list):
                raise BadVideo(video_id, f"{where}: missing required key 'segmentations' (a list)")
            if len(segs) != n:
                raise BadVideo(
                    video_id,
                    f"{where}.segmentations has {len(segs)} masks but the video has {n} frames "
                    "(file_names); expected one mask or null per frame",
                )
            rles: list[RLE | None] = []
            for f, s in enumerate(segs):
                try:
                    rles.append(to_rle(s, h, w))
                except MaskFormatError as e:
                    raise BadVideo(video_id, f"{where}.segmentations[{f}]: {e}") from e
            present = tuple(f for f, r in enumerate(rles) if rle_area(r) > 0)
            if not present:
                dropped.append((oid, "every mask is null or empty"))
                continue
            objects.append(
                ObjectTrack(
                    object_id=oid,
                    category=category,
                    present=present,
                    mask_fn=partial(mask_on_frame, rles, video_id, f"{where}.segmentations"),
                )
            )
        return objects, dropped

    def _category(self, category_id: object, where: str) -> str | None:
        """The category name of a track; ``None`` when it has no ``category_id`` or names a
        category the file does not list."""
        if category_id is None:
            return None
        cid = as_id(category_id, where=f"{where}.category_id")
        if cid in self._bad_categories:
            raise FieldError(
                f"{where}.category_id = {cid}: unusable category ({self._bad_categories[cid]})"
            )
        return self._categories.get(cid)
