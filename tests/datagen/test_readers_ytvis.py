"""YouTube-VIS / OVIS / toy-world-layout reader, on the real sample files and synthetic ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from synth_datasets import make_ytvis, write_frames

from datagen.readers import open_reader
from datagen.readers.rle import decode_rle, to_rle
from datagen.record import BadVideo

YTVIS_JSON = "ytvis/0043f083b5_ytvis_format_DERIVED.json"
OVIS_JSON = "ytvis/ovis_excerpt_annotations_train.json"


def _with_frames(shared_data: Path, rel: str, tmp_path: Path) -> tuple[Path, dict]:
    """The real JSON plus placeholder frames of the declared size in tmp_path."""
    path = shared_data / rel
    data = json.loads(path.read_text())
    for v in data["videos"]:
        write_frames(tmp_path, v["file_names"], v["width"], v["height"])
    return path, data


def test_real_ytvis_0043f083b5(shared_data: Path, tmp_path: Path) -> None:
    path, data = _with_frames(shared_data, YTVIS_JSON, tmp_path)
    reader = open_reader("ytvis", annotations=path, frames=tmp_path)
    assert reader.list_videos() == ["1"]
    rec = reader.load("1")
    assert (rec.width, rec.height, rec.num_frames, rec.fps) == (1280, 720, 20, 6.0)
    assert rec.frame_indices == tuple(range(0, 100, 5))  # 00000 .. 00095, 5 source frames apart
    assert rec.annotated == tuple(range(20))
    assert [o.object_id for o in rec.objects] == ["1", "2"]
    assert [o.category for o in rec.objects] == ["sedan", "sedan"]  # 2019 id 6
    # Null handling: track 1 absent on frames 0-1, track 2 on frames 0-7.
    assert rec.objects[0].present == tuple(range(2, 20))
    assert rec.objects[1].present == tuple(range(8, 20))
    assert rec.objects[0].mask(1) is None and rec.objects[1].mask(7) is None
    for obj, ann in zip(rec.objects, data["annotations"]):
        for i in obj.present:
            m = obj.mask(i)
            assert m.shape == (720, 1280) and m.dtype == bool
            ref = mask_utils.decode(mask_utils.frPyObjects(ann["segmentations"][i], 720, 1280))
            assert int(m.sum()) == ann["areas"][i] == int(ref.sum())  # YTVIS areas = mask areas
    frames = list(rec.frames([0, 19]))
    assert [f.shape for f in frames] == [(720, 1280, 3)] * 2
    assert frames[1][0, 0, 0] == 19 * 10 % 256  # placeholder frame 19, in the order asked


def test_real_ovis_string_rle_and_bbox_areas(shared_data: Path, tmp_path: Path) -> None:
    path, data = _with_frames(shared_data, OVIS_JSON, tmp_path)
    rec = open_reader("ytvis", annotations=path, frames=tmp_path).load("1")
    assert (rec.width, rec.height, rec.num_frames) == (1920, 886, 3)
    assert len(rec.objects) == 10
    assert {o.category for o in rec.objects} == {"Fish"}
    assert rec.frame_indices == (0, 1, 2)  # "img_0000001" is not a plain number: file order
    recomputed_differs = 0
    for obj, ann in zip(rec.objects, data["annotations"]):
        assert obj.present == (0, 1, 2)
        for i in range(3):
            seg = ann["segmentations"][i]
            assert isinstance(seg["counts"], str)
            m = obj.mask(i)
            assert m.shape == (886, 1920)
            assert int(m.sum()) == int(mask_utils.area(seg))
            _, _, w, h = ann["bboxes"][i]
            assert ann["areas"][i] == w * h  # OVIS areas are bbox areas, not mask areas
            assert m.sum() <= w * h
            recomputed_differs += int(m.sum()) != ann["areas"][i]
    assert recomputed_differs == 30
    assert next(rec.frames([2])).shape == (886, 1920, 3)


def test_synthetic_rle_forms_polygons_crowd_and_extension_fallback(tmp_path: Path) -> None:
    ann = make_ytvis(tmp_path)
    reader = open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages")
    a = reader.load("1")
    assert [o.object_id for o in a.objects] == ["10", "11"]
    assert a.dropped == (("12", "iscrowd=1 (crowd region, not an instance)"),)
    box, poly = a.objects
    assert box.present == (1, 2) and box.mask(0) is None
    assert int(box.mask(1).sum()) == 8 * 9 and box.mask(1)[2:10, 3:12].all()
    assert poly.category == "sedan" and poly.mask(0)[5, 5] and not poly.mask(0)[20, 20]
    # file_names say .jpg, the files are .png: accepted.
    assert next(a.frames([2]))[0, 0, 0] == 20
    b = reader.load("2")
    assert [int(b.objects[0].mask(i).sum()) for i in range(3)] == [30, 36, 42]


def test_toyworld_source_reads_ytvis_layout(tmp_path: Path) -> None:
    ann = make_ytvis(tmp_path)
    data = json.loads(ann.read_text())
    # Toy-world extensions: per-video fps and name (its frame folder), per-track object_id.
    data["videos"][1].update(fps=12, name="vid_b")
    data["annotations"][3]["object_id"] = 1
    ann.write_text(json.dumps(data))
    reader = open_reader("toyworld", root=tmp_path)
    assert reader.list_videos() == ["1", "vid_b"]
    recs = [reader.load(v) for v in reader.list_videos()]
    assert [r.source for r in recs] == ["toyworld", "toyworld"]
    assert [r.fps for r in recs] == [6.0, 12.0]
    assert [o.object_id for o in recs[1].objects] == ["1"]


def test_rle_forms_agree_and_decoder_refuses_overlong_runs() -> None:
    m = np.zeros((6, 5), bool)
    m[1:4, 2:5] = True
    enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    as_str = {"size": [6, 5], "counts": enc["counts"].decode()}
    assert (decode_rle(to_rle(as_str, 6, 5)) == m).all()
    overlong = {
        "size": [6, 5],
        "counts": mask_utils.encode(np.ones((60, 5), np.uint8, "F"))["counts"],
    }
    with pytest.raises(ValueError, match="do not cover the frame"):
        decode_rle(overlong)  # pycocotools would write past its 6x5 buffer


def test_bad_string_rle_is_refused_at_load_naming_field(tmp_path: Path) -> None:
    ann = make_ytvis(tmp_path)
    data = json.loads(ann.read_text())
    tiny = mask_utils.encode(np.ones((2, 2), np.uint8, "F"))["counts"].decode()
    data["annotations"][3]["segmentations"][1]["counts"] = tiny  # 4 pixels of a 32x24 frame
    ann.write_text(json.dumps(data))
    reader = open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages")
    with pytest.raises(BadVideo, match=r"annotations\[3\]\.segmentations\[1\]: .* sum to 4"):
        reader.load("2")
