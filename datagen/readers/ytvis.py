"""YouTube-VIS reader (2019 / 2021 / 2022, OVIS, and the built-in toy world).

Layout (FORMATS.md §1): one JSON with ``videos``, ``annotations`` (one entry per object track) and
``categories``; frames at ``<frames>/<file_names[i]>``. Masks are list-counts RLE, string-counts RLE
or polygons, ``null`` where the object is absent; ``areas`` are not trusted (recomputed from masks).

Ids: a record's ``video_id`` is the video entry's ``id`` (as a string), or its ``name`` when it
has one; an object's id is the track ``id``, or its ``object_id`` when it has one (the toy world
writes both extensions so that ids match its ground-truth folders).

Timing: YouTube-VIS frame files are every 5th frame of a 30 fps source, so the annotated frames
run at 6 fps; ``frame_indices`` come from the file numbers (``00005`` → 5) when numeric.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from datagen.readers.frames import (
    FrameError,
    check_geometry,
    find_image,
    numbered_indices,
    read_rgb,
    safe_join,
)
from datagen.readers.jsonfile import JsonFileError, read_json
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
    paths: Sequence[Path], size: tuple[int, int], video_id: str, where: str, indices: Sequence[int]
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
            yield read_rgb(found, size=size)
        except FrameError as e:
            raise BadVideo(video_id, str(e)) from e


def video_key(video: object, index: int) -> str:
    """The record id of ``videos[index]``: its ``name`` when it has one (toy world extension,
    the frame folder name), else its numeric ``id`` as a string."""
    if isinstance(video, dict):
        name = video.get("name")
        if isinstance(name, str) and name:
            return name
        if "id" in video:
            return str(video["id"])
    return f"videos[{index}]"


class YtvisReader(Reader):
    """Reads a YouTube-VIS-layout dataset. The constructor parses the JSON index only.

    Args:
        annotations: the annotation JSON file.
        frames: the folder that ``file_names`` are relative to (the split's ``JPEGImages``).
        fps: frame rate of the annotated frames when a video entry has no ``fps`` field.
        source_name: ``source`` written in the records (``"ytvis"`` or ``"toyworld"``).
    """

    def __init__(
        self,
        *,
        annotations: str | Path,
        frames: str | Path,
        fps: float = 6.0,
        source_name: str = "ytvis",
    ) -> None:
        self.source = source_name
        self.annotations = Path(annotations)
        self.frames_root = Path(frames)
        self.fps = float(fps)
        self.warnings: list[str] = []
        try:
            data = read_json(self.annotations)
        except JsonFileError as e:
            raise DatasetError(str(e)) from e
        name = self.annotations.name
        if not isinstance(data, dict):
            raise DatasetError(f"{name}: expected a JSON object at top level, got {type(data)}")
        videos = data.get("videos")
        if not isinstance(videos, list):
            raise DatasetError(f"{self.annotations}: missing required key 'videos' (a list)")
        tracks = data.get("annotations", [])
        if not isinstance(tracks, list):
            raise DatasetError(f"{self.annotations}: 'annotations' must be a list of tracks")
        if not self.frames_root.is_dir():
            raise DatasetError(f"frames folder not found: {self.frames_root}")
        self._categories = {
            str(c.get("id")): str(c.get("name"))
            for c in data.get("categories") or []
            if isinstance(c, dict)
        }
        self._videos: dict[str, tuple[int, dict[str, Any]]] = {}
        key_of_id: dict[str, str] = {}  # videos[].id -> record video id
        for i, v in enumerate(videos):
            vid = video_key(v, i)
            if vid in self._videos:
                raise DatasetError(f"{name}: videos[{i}]: duplicate video id {vid!r}")
            self._videos[vid] = (i, v)
            if isinstance(v, dict) and "id" in v:
                key_of_id[str(v["id"])] = vid
        self._tracks: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for i, t in enumerate(tracks):
            if not isinstance(t, dict) or "video_id" not in t:
                self.warnings.append(f"{name}: annotations[{i}] has no 'video_id'; ignored")
            elif str(t["video_id"]) not in key_of_id:
                self.warnings.append(
                    f"{name}: annotations[{i}].video_id = {t['video_id']} is not in 'videos'; "
                    "ignored"
                )
            else:
                self._tracks.setdefault(key_of_id[str(t["video_id"])], []).append((i, t))

    def list_videos(self) -> list[str]:
        return list(self._videos)

    def load(self, video_id: str) -> VideoRecord:
        if video_id not in self._videos:
            raise BadVideo(video_id, f"not in {self.annotations}")
        idx, v = self._videos[video_id]
        where = f"{self.annotations.name}: videos[{idx}]"
        if not isinstance(v, dict):
            raise BadVideo(video_id, f"{where}: expected an object, got {type(v).__name__}")
        missing = [k for k in ("id", "width", "height", "file_names") if k not in v]
        if missing:
            raise BadVideo(video_id, f"{where}: missing required key(s) {missing}")
        names = v["file_names"]
        if not isinstance(names, list) or not names:
            raise BadVideo(video_id, f"{where}.file_names: expected a non-empty list of paths")
        try:
            check_geometry(v["width"], v["height"], len(names), where=where)
            paths = [
                safe_join(self.frames_root, n, where=f"{where}.file_names[{j}]")
                for j, n in enumerate(names)
            ]
        except FrameError as e:
            raise BadVideo(video_id, str(e)) from e
        width, height, n = int(v["width"]), int(v["height"]), len(names)
        if "length" in v and v["length"] != n:
            raise BadVideo(
                video_id, f"{where}.length = {v['length']} but file_names lists {n} frames"
            )
        tracks = self._tracks.get(video_id)
        if not tracks:
            raise BadVideo(
                video_id,
                f"{where}: no ground-truth tracks in 'annotations' (valid/test splits carry none)",
            )
        objects, dropped = self._tracks_to_objects(video_id, tracks, width, height, n)
        if not objects:
            raise BadVideo(video_id, f"{where}: zero usable objects ({describe_dropped(dropped)})")
        fps = v.get("fps")
        fps = float(fps) if isinstance(fps, int | float) and fps > 0 else self.fps
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
            frames_fn=partial(_frames_at, paths, (width, height), video_id, where),
            dropped=tuple(dropped),
        )

    def _tracks_to_objects(
        self, video_id: str, tracks: list[tuple[int, dict[str, Any]]], w: int, h: int, n: int
    ) -> tuple[list[ObjectTrack], list[tuple[str, str]]]:
        objects: list[ObjectTrack] = []
        dropped: list[tuple[str, str]] = []
        for ti, t in tracks:
            oid = str(t.get("object_id", t.get("id", ti)))
            where = f"{self.annotations.name}: annotations[{ti}]"
            if t.get("iscrowd") in (1, "1", True):
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
                    category=self._categories.get(str(t.get("category_id"))),
                    present=present,
                    mask_fn=partial(mask_on_frame, rles, video_id, f"{where}.segmentations"),
                )
            )
        return objects, dropped
