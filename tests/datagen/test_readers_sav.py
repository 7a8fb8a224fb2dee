"""SA-V reader: the real sav_000001 JSONs paired with an mp4 of the same geometry, and synthetic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from synth_datasets import frame_colour, make_sav, write_mp4

from datagen.dryrun import dry_run
from datagen.readers import open_reader


@pytest.fixture(scope="module")
def sav_root(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real JSONs (copied: links out of the dataset folder are refused) + a 483-frame
    480x848 (WxH) 24 fps H.264 mp4."""
    root = tmp_path_factory.mktemp("sav")
    for kind in ("manual", "auto"):
        shutil.copyfile(
            shared_data / "sav" / f"sav_000001_{kind}.json", root / f"sav_000001_{kind}.json"
        )
    write_mp4(root / "sav_000001.mp4", 483, 480, 848)
    return root


def test_real_sav_manual(sav_root: Path) -> None:
    reader = open_reader("sav", root=sav_root)
    assert reader.list_videos() == ["sav_000001"]
    rec = reader.load("sav_000001")
    assert (rec.width, rec.height, rec.num_frames) == (480, 848, 121)
    assert rec.fps == 6.0  # 483 frames / 20.125 s = 24 fps, masks every 4th frame
    assert rec.frame_indices == tuple(range(0, 484, 4))  # annotated i = video frame 4i
    assert [o.object_id for o in rec.objects] == ["0", "1", "2", "3", "4"]
    doc = json.loads((sav_root / "sav_000001_manual.json").read_text())
    absent = 0
    for j, obj in enumerate(rec.objects):
        areas = [0 if obj.mask(i) is None else int(obj.mask(i).sum()) for i in range(121)]
        absent += areas.count(0)
        assert obj.present == tuple(i for i, a in enumerate(areas) if a > 0)
        assert obj.present[0] == doc["masklet_first_appeared_frame"][j]  # 6 fps units
        visible = [a for a in areas if a > 0]
        assert np.isclose(np.mean(visible), doc["masklet_size_abs"][j])
    assert absent == 125  # empty RLEs (not nulls) mark absence: 125 of 605 entries
    assert rec.objects[3].present[0] == 113
    assert rec.objects[0].mask(0).shape == (848, 480)


def test_real_sav_frames_follow_the_4_frame_stride(sav_root: Path) -> None:
    rec = open_reader("sav", root=sav_root).load("sav_000001")
    frames = list(rec.frames([5, 0, 120]))  # out of order on purpose
    assert [f.shape for f in frames] == [(848, 480, 3)] * 3
    reds = [round(int(f[400, 240, 0]) / 8) for f in frames]
    assert reds == [frame_colour(v) // 8 for v in (20, 0, 480)]


def test_real_sav_auto_and_both(sav_root: Path) -> None:
    auto = open_reader("sav", root=sav_root, masklets="auto").load("sav_000001")
    assert len(auto.objects) == 9
    both = open_reader("sav", root=sav_root, masklets="both").load("sav_000001")
    ids = [o.object_id for o in both.objects]
    assert ids[:5] == [f"manual_{i}" for i in range(5)]
    assert ids[5:] == [f"auto_{i}" for i in range(9)]


def test_real_sav_dry_run(sav_root: Path) -> None:
    summary = dry_run(open_reader("sav", root=sav_root, masklets="both"), progress=False)
    assert (summary["videos"], summary["objects"], summary["annotated_frames"]) == (1, 14, 121)
    assert summary["masks"] == (605 - 125) + (1089 - 137)
    assert summary["problems"] == 0


def test_synthetic_sav_null_and_empty_mean_absent(tmp_path: Path) -> None:
    make_sav(tmp_path, frames=9)  # 9 frames at stride 4 -> annotated video frames 0, 4, 8
    rec = open_reader("sav", root=tmp_path).load("sav_000002")
    assert rec.frame_indices == (0, 4, 8) and rec.fps == 6.0
    a, b = rec.objects
    assert a.present == (0, 1, 2) and b.present == (2,)
    assert b.mask(0) is None and b.mask(1) is None  # null, then empty RLE
    assert int(b.mask(2).sum()) == 64
    reds = [round(int(f[5, 5, 0]) / 8) for f in rec.frames()]
    assert reds == [frame_colour(v) // 8 for v in (0, 4, 8)]
