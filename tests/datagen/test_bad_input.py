"""Bad input (issue 2 §4): a clear message naming the file and field, and batch runs that skip
and count one bad video instead of crashing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from synth_datasets import make_sav, make_vos, make_ytvis

from datagen.dryrun import dry_run
from datagen.readers import open_reader
from datagen.record import BadVideo, DatasetError


def _ytvis(tmp_path: Path, mutate: Callable[[dict[str, Any]], None] | None = None):
    ann = make_ytvis(tmp_path)
    if mutate is not None:
        data = json.loads(ann.read_text())
        mutate(data)
        ann.write_text(json.dumps(data))
    return open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages")


def _one_skipped(reader, pattern: str, *, usable: int = 1) -> str:
    """Batch run: the bad video is skipped with a reason matching ``pattern``, the rest used."""
    summary = dry_run(reader, progress=False)
    assert summary["videos"] == usable
    assert len(summary["skipped"]) == 1
    reason = summary["skipped"][0]["reason"]
    assert re.search(pattern, reason), reason
    assert summary["problems"] >= 1
    return reason


def test_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"annotation file not found: .*nope\.json"):
        open_reader("ytvis", annotations=tmp_path / "nope.json", frames=tmp_path)


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "train.json"
    bad.write_text('{"videos": [\n  {"id": 1,\n   "width": 10,,\n}')
    with pytest.raises(DatasetError, match=r"train\.json: invalid JSON at line 3, column 16"):
        open_reader("ytvis", annotations=bad, frames=tmp_path)


def test_sav_json_syntax_error_skips_only_that_video(tmp_path: Path) -> None:
    make_sav(tmp_path, "sav_000002")
    make_sav(tmp_path, "sav_000003")
    (tmp_path / "sav_000003_manual.json").write_text('{"masklet": [')
    _one_skipped(
        open_reader("sav", root=tmp_path), r"sav_000003_manual\.json: invalid JSON at line 1"
    )


def test_missing_required_keys(tmp_path: Path) -> None:
    top = tmp_path / "top.json"
    top.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DatasetError, match=r"top\.json: missing required key 'videos'"):
        open_reader("ytvis", annotations=top, frames=tmp_path)
    reader = _ytvis(tmp_path, lambda d: d["videos"][1].pop("width"))
    _one_skipped(reader, r"annotations\.json: videos\[1\]: missing required key\(s\) \['width'\]")
    reader = _ytvis(tmp_path, lambda d: d["annotations"][3].pop("segmentations"))
    _one_skipped(reader, r"annotations\[3\]: missing required key 'segmentations'")
    sav = tmp_path / "sav"
    make_sav(sav)
    make_sav(sav, "sav_000003")
    doc = json.loads((sav / "sav_000003_manual.json").read_text())
    del doc["masklet"]
    (sav / "sav_000003_manual.json").write_text(json.dumps(doc))
    _one_skipped(open_reader("sav", root=sav), r"sav_000003_manual\.json: missing .*'masklet'")


def test_rle_size_mismatch(tmp_path: Path) -> None:
    def shrink(d: dict[str, Any]) -> None:
        d["annotations"][3]["segmentations"][2]["size"] = [10, 10]

    reason = _one_skipped(_ytvis(tmp_path, shrink), r"annotations\[3\]\.segmentations\[2\]")
    assert "RLE size [10, 10] does not match the video size [height, width] = [24, 32]" in reason


@pytest.mark.parametrize("name", ["../outside/00000.jpg", "/etc/passwd", "vid_b/../../x.png"])
def test_file_names_escaping_the_root(tmp_path: Path, name: str) -> None:
    reader = _ytvis(tmp_path, lambda d: d["videos"][1]["file_names"].__setitem__(1, name))
    reason = _one_skipped(reader, r"videos\[1\]\.file_names\[1\]")
    assert "escapes the dataset root" in reason or "is absolute" in reason


def test_frame_files_missing(tmp_path: Path) -> None:
    reader = _ytvis(tmp_path)
    (tmp_path / "JPEGImages" / "vid_b" / "00005.png").unlink()
    _one_skipped(reader, r"videos\[1\]\.file_names\[1\]: frame file .*vid_b/00005\.jpg not found")


def test_mask_and_frame_counts_mismatch(tmp_path: Path) -> None:
    reader = _ytvis(tmp_path / "y", lambda d: d["annotations"][3]["segmentations"].pop())
    _one_skipped(reader, r"annotations\[3\]\.segmentations has 2 masks but the video has 3 frames")
    sav = tmp_path / "sav"
    make_sav(sav)
    make_sav(sav, "sav_000003", frames=13)  # 13 frames -> 4 annotated frames expected ...
    doc = json.loads((sav / "sav_000003_manual.json").read_text())
    doc["masklet"] = doc["masklet"][:3]  # ... but masks for 3
    (sav / "sav_000003_manual.json").write_text(json.dumps(doc))
    _one_skipped(open_reader("sav", root=sav), r"'masklet' has 3 annotated frames .* gives 4")
    vos = make_vos(tmp_path / "vos")
    make_vos(vos, "other")
    Image.new("P", (20, 16)).save(vos / "Annotations" / "other" / "00009.png")
    _one_skipped(open_reader("vos", root=vos), r"other/00009\.png: mask has no matching frame")


def test_unreadable_or_truncated_video(tmp_path: Path) -> None:
    make_sav(tmp_path, "sav_000002")
    make_sav(tmp_path, "sav_000003", frames=200, width=64, height=48, faststart=True)
    mp4 = tmp_path / "sav_000003.mp4"
    data = mp4.read_bytes()
    mp4.write_bytes(b"not a video at all" * 10)
    _one_skipped(open_reader("sav", root=tmp_path), r"sav_000003\.mp4: unreadable video")
    mp4.write_bytes(data[: len(data) // 2])  # truncated: the index is intact, the frames are not
    rec = open_reader("sav", root=tmp_path).load("sav_000003")  # the header still reads fine
    assert rec.num_frames == 50
    # A truncated stream ends early or fails to decode (which one depends on decoder threading).
    _one_skipped(
        open_reader("sav", root=tmp_path),
        r"sav_000003\.mp4: (video ended before frame 196|cannot decode video)",
    )
    mp4.unlink()
    _one_skipped(open_reader("sav", root=tmp_path), r"video file not found: .*sav_000003\.mp4")


def test_sav_declared_frame_count_disagrees_with_mp4(tmp_path: Path) -> None:
    make_sav(tmp_path, "sav_000002")
    make_sav(tmp_path, "sav_000003", frames=9)
    doc = json.loads((tmp_path / "sav_000003_manual.json").read_text())
    doc["video_frame_count"] = 10.0
    (tmp_path / "sav_000003_manual.json").write_text(json.dumps(doc))
    _one_skipped(open_reader("sav", root=tmp_path), r"has 9 frames but .* video_frame_count = 10")


@pytest.mark.parametrize(("mode", "dtype"), [("RGB", np.uint8), ("I;16", np.uint16)])
def test_unsupported_png_mode(tmp_path: Path, mode: str, dtype: type) -> None:
    make_vos(tmp_path)
    make_vos(tmp_path, "other")
    arr = np.zeros((16, 20, 3) if mode == "RGB" else (16, 20), dtype)
    Image.fromarray(arr).save(tmp_path / "Annotations" / "other" / "00002.png")
    reason = _one_skipped(open_reader("vos", root=tmp_path), r"other/00002\.png")
    assert f"unsupported mask PNG mode '{mode}'" in reason


def test_zero_usable_objects(tmp_path: Path) -> None:
    def blank(d: dict[str, Any]) -> None:
        d["annotations"][3]["segmentations"] = [None, None, None]

    reason = _one_skipped(_ytvis(tmp_path, blank), r"videos\[1\]: zero usable objects")
    assert "object 20: every mask is null or empty" in reason
    reader = _ytvis(tmp_path, lambda d: d.pop("annotations"))  # a valid/test split: no GT
    summary = dry_run(reader, progress=False)
    assert summary["videos"] == 0 and len(summary["skipped"]) == 2
    assert "no ground-truth tracks" in summary["skipped"][0]["reason"]


def test_absurd_declared_sizes_are_refused_before_allocating(tmp_path: Path) -> None:
    def huge(d: dict[str, Any]) -> None:
        d["videos"][1].update(width=100_000, height=100_000)
        for s in d["annotations"][3]["segmentations"]:
            s["size"] = [100_000, 100_000]

    _one_skipped(_ytvis(tmp_path / "y", huge), r"videos\[1\]: declared frame size 100000x100000")
    sav = tmp_path / "sav"
    make_sav(sav)
    make_sav(sav, "sav_000003")
    doc = json.loads((sav / "sav_000003_manual.json").read_text())
    doc["video_frame_count"] = 1e9
    (sav / "sav_000003_manual.json").write_text(json.dumps(doc))
    _one_skipped(open_reader("sav", root=sav), r"declared length 1000000000 exceeds the limit")
    vos = make_vos(tmp_path / "vos")
    make_vos(vos, "other")
    Image.new("1", (9000, 9000)).save(vos / "Annotations" / "other" / "00001.png")  # 81 MP
    _one_skipped(open_reader("vos", root=vos), r"other/00001\.png: image 9000x9000 exceeds")


def test_lazy_errors_are_badvideo(tmp_path: Path) -> None:
    reader = _ytvis(tmp_path)
    rec = reader.load("2")
    (tmp_path / "JPEGImages" / "vid_b" / "00010.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(BadVideo, match=r"00010\.png: not a readable image"):
        list(rec.frames())
