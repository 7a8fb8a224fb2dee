"""Toy world on disk: YouTube-VIS JSON, frames, ground truth, reruns, CLI and preview."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from datagen.toyworld import SHAPES, WorldConfig, load_ground_truth, write_dataset
from datagen.toyworld.cli import main
from datagen.toyworld.preview import preview_size

CFG = WorldConfig(width=48, height=40, num_frames=12)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy")
    return write_dataset(out, CFG, num_videos=6, seed=1, progress=None)


def _frame(root: Path, name: str) -> np.ndarray:
    with Image.open(root / "JPEGImages" / name) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def test_layout_and_json(root):
    ann = json.loads((root / "annotations.json").read_text())
    world = json.loads((root / "world.json").read_text())
    assert world["seed"] == 1 and world["num_videos"] == 6 and world["config"]["fps"] == 6.0
    assert [c["name"] for c in ann["categories"]] == list(SHAPES)
    assert [v["file_names"][0] for v in ann["videos"]][:2] == [
        "toy_000000/00000.png",
        "toy_000001/00000.png",
    ]
    for v in ann["videos"]:
        assert (v["width"], v["height"], v["length"]) == (48, 40, 12)
        assert len(v["file_names"]) == 12
        assert all((root / "JPEGImages" / f).is_file() for f in v["file_names"])
    assert len({a["id"] for a in ann["annotations"]}) == len(ann["annotations"])


def test_rles_decode_to_ground_truth_masks_and_nulls_exist(root):
    ann = json.loads((root / "annotations.json").read_text())
    videos = {v["id"]: v for v in ann["videos"]}
    partial_tracks = 0
    for track in ann["annotations"]:
        video = videos[track["video_id"]]
        gt = load_ground_truth(root, video["file_names"][0].split("/")[0])
        masks = gt.instance_masks[gt.index_of(track["object_id"])]
        assert track["iscrowd"] == 0 and 1 <= track["category_id"] <= len(SHAPES)
        assert len(track["segmentations"]) == video["length"]
        nulls = 0
        for t, seg in enumerate(track["segmentations"]):
            if seg is None:
                nulls += 1
                assert not masks[t].any()
                assert track["areas"][t] is None and track["bboxes"][t] is None
                continue
            assert isinstance(seg["counts"], str) and seg["size"] == [40, 48]
            decoded = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            assert np.array_equal(decoded.astype(bool), masks[t])
            assert track["areas"][t] == int(masks[t].sum())
            ys, xs = np.nonzero(masks[t])
            assert track["bboxes"][t] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]
        partial_tracks += 0 < nulls < video["length"]
    assert partial_tracks > 0  # objects entering / leaving the frame


def test_ground_truth_matches_frames(root):
    gt = load_ground_truth(root, "toy_000002")
    frames = np.stack([_frame(root, f"toy_000002/{t:05d}.png") for t in range(12)])
    for k in range(len(gt.object_ids)):
        outside = ~(gt.instance_masks[k] | gt.effect_masks[k])
        assert np.array_equal(gt.clean_plates[k][outside], frames[outside])
    assert gt.background.shape == frames.shape


def test_same_seed_same_bytes_and_videos_independent_of_count(root, tmp_path):
    other = write_dataset(tmp_path / "a", CFG, num_videos=3, seed=1, progress=None)
    for t in (0, 11):
        name = f"toy_000002/{t:05d}.png"
        assert (other / "JPEGImages" / name).read_bytes() == (
            root / "JPEGImages" / name
        ).read_bytes()
    a, b = load_ground_truth(root, "toy_000001"), load_ground_truth(other, "toy_000001")
    assert np.array_equal(a.clean_plates, b.clean_plates)
    assert np.array_equal(a.effect_masks, b.effect_masks)
    diff = write_dataset(tmp_path / "b", CFG, num_videos=1, seed=2, progress=None)
    assert not np.array_equal(
        _frame(diff, "toy_000000/00000.png"), _frame(root, "toy_000000/00000.png")
    )


def test_rerun_is_a_noop_force_rewrites_and_conflict_is_refused(tmp_path):
    out = write_dataset(tmp_path, CFG, num_videos=1, seed=0, progress=None)
    stamp = (out / "annotations.json").stat().st_mtime_ns
    messages: list[str] = []
    write_dataset(out, CFG, num_videos=1, seed=0, progress=messages.append)
    assert (out / "annotations.json").stat().st_mtime_ns == stamp
    assert "nothing to do" in messages[0]
    with pytest.raises(FileExistsError, match=r"world\.json"):
        write_dataset(out, CFG, num_videos=2, seed=0, progress=None)
    write_dataset(out, CFG, num_videos=2, seed=0, force=True, progress=None)
    assert len(json.loads((out / "annotations.json").read_text())["videos"]) == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "JPEGImages",
        "annotations.json",
        "ground_truth",
        "world.json",
    ]


def test_refuses_to_write_into_a_foreign_folder_and_redoes_an_unfinished_one(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a toy-world folder"):
        write_dataset(tmp_path, CFG, num_videos=1, progress=None)
    assert (tmp_path / "JPEGImages").is_dir()
    unfinished = tmp_path / "u"
    (unfinished / "JPEGImages" / "toy_000000").mkdir(parents=True)
    (unfinished / ".toyworld-incomplete").write_text("{}")
    write_dataset(unfinished, CFG, num_videos=1, progress=None)
    assert (unfinished / "world.json").is_file()
    assert not (unfinished / ".toyworld-incomplete").exists()


def test_workers_give_the_same_dataset(tmp_path):
    one = write_dataset(tmp_path / "one", CFG, num_videos=3, seed=4, progress=None)
    two = write_dataset(tmp_path / "two", CFG, num_videos=3, seed=4, workers=2, progress=None)
    assert (one / "annotations.json").read_bytes() == (two / "annotations.json").read_bytes()


def test_bad_video_id_is_rejected(root):
    with pytest.raises(ValueError, match="plain folder name"):
        load_ground_truth(root, "../etc")
    with pytest.raises(FileNotFoundError, match=r"masks\.npz"):
        load_ground_truth(root, "toy_999999")


def test_cli_write_and_preview(tmp_path, capsys):
    out = tmp_path / "w"
    rc = main(
        [
            "write",
            "--out",
            str(out),
            "--videos",
            "2",
            "--size",
            "32x24",
            "--frames",
            "4",
            "--reflection-prob",
            "1",
            "--seed",
            "3",
        ]
    )
    assert rc == 0
    world = json.loads((out / "world.json").read_text())
    assert world["config"]["width"] == 32 and world["config"]["height"] == 24
    assert world["config"]["reflection_prob"] == 1.0
    png = tmp_path / "p.png"
    assert main(["preview", "--root", str(out), "--out", str(png), "--videos", "2"]) == 0
    with Image.open(png) as im:
        assert im.size == preview_size(32, 24, 2)
        assert im.mode == "RGB"
    assert capsys.readouterr().out.strip().endswith("p.png")


def test_cli_bad_size_and_missing_root(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["write", "--out", str(tmp_path), "--size", "64by64"])
    assert "--size" in capsys.readouterr().err
    assert (
        main(["preview", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    )
    assert "annotations.json" in capsys.readouterr().err


def test_toyworld_reader_reads_the_output(root, tmp_path):
    from datagen.readers import open_reader

    ann = json.loads((root / "annotations.json").read_text())
    reader = open_reader("toyworld", root=str(root))
    # Toy-world records are named like their ground-truth folders (the video's ``name``).
    assert reader.list_videos() == [entry["name"] for entry in ann["videos"]]
    n_tracks = 0
    for entry in ann["videos"]:
        name = entry["name"]
        record = reader.load(name)
        assert record.video_id == name
        gt = load_ground_truth(root, name)
        assert (record.source, record.width, record.height) == ("toyworld", 48, 40)
        assert record.num_frames == 12 and record.fps == 6.0
        tracks = [a for a in ann["annotations"] if a["video_id"] == entry["id"]]
        assert len(record.objects) == len(tracks)
        n_tracks += len(record.objects)
        frame = record.frame(5)
        assert np.array_equal(frame, _frame(root, f"{name}/00005.png"))
        for obj, track in zip(record.objects, tracks):
            masks = gt.instance_masks[gt.index_of(track["object_id"])]
            assert obj.present == tuple(np.nonzero(masks.reshape(12, -1).any(-1))[0])
            t = obj.present[0]
            assert np.array_equal(obj.mask(t).astype(bool), masks[t])
    assert n_tracks == len(ann["annotations"])
    custom = write_dataset(tmp_path, replace(CFG, fps=5.0), num_videos=1, seed=1, progress=None)
    assert open_reader("toyworld", root=str(custom)).load("toy_000000").fps == 5.0
