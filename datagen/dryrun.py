"""Dry run: validate a dataset end to end without writing anything.

For every video the reader lists, :func:`dry_run` loads the record, decodes every object's mask
on every annotated frame (checking shape and that ``present`` tells the truth) and, with
``check_frames``, decodes every frame (image files or the mp4, streamed one frame at a time).
One bad video is recorded in ``skipped`` with its reason and the run goes on. Given the job's clip
length it also counts the usable videos that can yield a clip (enough consecutive annotated frames,
an object present at the start), so a run that would produce no samples is known beforehand.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from datagen.clips import can_cut_clip
from datagen.record import BadVideo, Reader, VideoRecord

log = logging.getLogger(__name__)


def check_record(record: VideoRecord, *, check_frames: bool = True) -> dict[str, int]:
    """Decode everything a record promises and check it.

    Args:
        record: a loaded video.
        check_frames: also decode every frame and check its ``(H, W, 3)`` uint8 shape.

    Returns:
        ``{"masks": decoded non-empty masks, "frames": decoded frames}``.

    Raises:
        BadVideo: a mask or frame fails to decode, has the wrong shape, or ``present`` is wrong.
    """
    vid, shape = record.video_id, (record.height, record.width)
    masks = 0
    for obj in record.objects:
        present = set(obj.present)
        for i in record.annotated:
            m = obj.mask(i)
            if m is None:
                if i in present:
                    raise BadVideo(vid, f"object {obj.object_id}: no mask on annotated frame {i}")
                continue
            if not isinstance(m, np.ndarray) or m.shape != shape or m.dtype != bool:
                got = getattr(m, "shape", type(m).__name__)
                raise BadVideo(
                    vid,
                    f"object {obj.object_id}, frame {i}: mask is {got}, expected bool {shape}",
                )
            if i not in present or not m.any():
                raise BadVideo(
                    vid, f"object {obj.object_id}, frame {i}: mask disagrees with 'present'"
                )
            masks += 1
    frames = 0
    if check_frames:
        for frame in record.frames():
            if frame.shape != (*shape, 3) or frame.dtype != np.uint8:
                raise BadVideo(
                    vid, f"frame {frames}: decoded {frame.shape} {frame.dtype}, expected {shape}"
                )
            frames += 1
        if frames != record.num_frames:
            raise BadVideo(vid, f"decoded {frames} frames, expected {record.num_frames}")
    return {"masks": masks, "frames": frames}


def dry_run(
    reader: Reader,
    *,
    check_frames: bool = True,
    progress: bool = True,
    max_videos: int | None = None,
    clip_frames: int | None = None,
    clip_strides: Sequence[int] = (1,),
) -> dict[str, Any]:
    """Validate every video of ``reader`` and summarise.

    Args:
        reader: an opened reader (see :func:`datagen.readers.open_reader`).
        check_frames: decode every frame too (the slow part); masks are always decoded.
        progress: show a progress bar on stderr.
        max_videos: check only the first ``max_videos`` videos (``None``: all).
        clip_frames: the job's ``clip.frames``; when given, ``videos_with_clip`` counts the usable
            videos that can yield a clip of that length at one of ``clip_strides``.
        clip_strides: the job's ``clip.stride`` values.

    Returns:
        A JSON-serialisable summary: ``source``; ``videos`` (usable videos), ``objects`` (usable
        tracks), ``annotated_frames`` (frames carrying masks, summed), ``frames`` (all annotated
        frames, summed), ``masks`` (non-empty masks decoded), ``frames_checked`` (frames decoded,
        0 without ``check_frames``); ``skipped`` (``[{"video",
        "reason"}]``), ``dropped_objects`` (``[{"video", "object", "reason"}]``, e.g. crowd
        tracks), ``warnings`` (index-level notes from the reader) and ``problems`` (the number
        of skipped videos, dropped objects and warnings together). With ``clip_frames``, also
        ``clip_frames`` and ``videos_with_clip``.
    """
    ids = reader.list_videos()
    if max_videos is not None:
        ids = ids[:max_videos]
    summary: dict[str, Any] = {
        "source": reader.source,
        "videos": 0,
        "objects": 0,
        "annotated_frames": 0,
        "frames": 0,
        "masks": 0,
        "frames_checked": 0,
        "skipped": [],
        "dropped_objects": [],
        "warnings": list(getattr(reader, "warnings", [])),
    }
    if clip_frames is not None:
        summary.update(clip_frames=int(clip_frames), videos_with_clip=0)
    for vid in tqdm(ids, disable=not progress, file=sys.stderr, unit="video", desc="dry run"):
        try:
            record = reader.load(vid)
            counts = check_record(record, check_frames=check_frames)
        except BadVideo as e:
            reason = e.reason
        except Exception as e:
            reason = f"unexpected {type(e).__name__}: {e}"
        else:
            summary["videos"] += 1
            if clip_frames is not None and can_cut_clip(
                record, frames=int(clip_frames), strides=clip_strides
            ):
                summary["videos_with_clip"] += 1
            summary["objects"] += len(record.objects)
            summary["annotated_frames"] += len(record.annotated)
            summary["frames"] += record.num_frames
            summary["masks"] += counts["masks"]
            summary["frames_checked"] += counts["frames"]
            summary["dropped_objects"] += [
                {"video": vid, "object": oid, "reason": why} for oid, why in record.dropped
            ]
            continue
        log.warning("skipped video %s: %s", vid, reason)
        summary["skipped"].append({"video": vid, "reason": reason})
    summary["problems"] = (
        len(summary["skipped"]) + len(summary["dropped_objects"]) + len(summary["warnings"])
    )
    return summary
