"""Untrusted files on disk: links out of the dataset, FIFOs, deep or oversized JSON.

Every reader refuses, with a message naming the path, a file that resolves outside the dataset
folder or is not a regular file, without opening it (a FIFO would block forever; the timeout
marks turn such a hang into a failure). Links that stay inside the dataset, and a dataset folder
that is itself a link, keep working.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth_datasets import make_sav, make_vos, make_ytvis, write_mp4

from datagen.dryrun import dry_run
from datagen.readers import open_reader
from datagen.record import BadVideo, DatasetError

OUTSIDE = "outside the dataset folder"
NOT_REGULAR = "not a regular file"


def _one_skipped(reader, *needles: str) -> str:
    summary = dry_run(reader, progress=False)
    assert len(summary["skipped"]) == 1, summary["skipped"]
    reason = summary["skipped"][0]["reason"]
    for needle in needles:
        assert needle in reason, reason
    return reason


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """An image outside every dataset folder (what a hostile link would leak into shards)."""
    p = tmp_path / "elsewhere" / "secret.png"
    p.parent.mkdir()
    Image.new("RGB", (32, 24), (1, 2, 3)).save(p)
    return p


def _relink(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def test_ytvis_frame_link_out_of_the_dataset(tmp_path: Path, secret: Path) -> None:
    ann = make_ytvis(tmp_path / "d")
    frames = tmp_path / "d" / "JPEGImages"
    _relink(frames / "vid_b" / "00005.png", secret)
    reader = open_reader("ytvis", annotations=ann, frames=frames)
    _one_skipped(reader, "videos[1].file_names[1]", "vid_b/00005.png", OUTSIDE)
    allowed = open_reader("ytvis", annotations=ann, frames=frames, allow_links_outside=True)
    assert next(allowed.load("2").frames([1]))[0, 0].tolist() == [1, 2, 3]
    # A link inside the dataset, and a frames folder that is itself a link, are fine.
    _relink(frames / "vid_b" / "00005.png", frames / "vid_b" / "00000.png")
    (tmp_path / "link").symlink_to(frames)
    summary = dry_run(open_reader("ytvis", annotations=ann, frames=tmp_path / "link"))
    assert summary["videos"] == 2 and not summary["skipped"]


@pytest.mark.timeout(60)
def test_ytvis_fifo_frame_and_annotation_file(tmp_path: Path) -> None:
    ann = make_ytvis(tmp_path)
    _fifo(tmp_path / "JPEGImages" / "vid_b" / "00010.png")
    reader = open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages")
    _one_skipped(reader, "vid_b/00010.png", NOT_REGULAR)
    _fifo(ann)
    with pytest.raises(DatasetError, match=r"annotation file is not a file: .*annotations\.json"):
        open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages")


@pytest.mark.parametrize("what", ["frame", "mask", "sequence folder"])
def test_vos_links_out_of_the_dataset(tmp_path: Path, secret: Path, what: str) -> None:
    root = make_vos(tmp_path / "d", width=32, height=24)
    make_vos(root, "other", width=32, height=24)
    if what == "frame":
        _relink(root / "JPEGImages" / "other" / "00001.jpg", secret)
        needle = "other/00001.jpg"
    elif what == "mask":
        ids = np.zeros((24, 32), np.uint8)
        ids[2:9, 2:9] = 1
        Image.fromarray(ids).save(tmp_path / "elsewhere" / "mask.png")
        _relink(root / "Annotations" / "other" / "00001.png", tmp_path / "elsewhere" / "mask.png")
        needle = "other/00001.png"
    else:
        shutil.move(root / "JPEGImages" / "other", tmp_path / "elsewhere" / "other")
        (root / "JPEGImages" / "other").symlink_to(tmp_path / "elsewhere" / "other")
        needle = "JPEGImages/other"
    _one_skipped(open_reader("vos", root=root), needle, OUTSIDE)
    allowed = dry_run(open_reader("vos", root=root, allow_links_outside=True), progress=False)
    assert allowed["videos"] == 2 and not allowed["skipped"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("folder", ["JPEGImages", "Annotations"])
def test_vos_fifo_in_frames_or_masks_folder(tmp_path: Path, folder: str) -> None:
    root = make_vos(tmp_path)
    make_vos(root, "other")
    name = "00002.jpg" if folder == "JPEGImages" else "00002.png"
    _fifo(root / folder / "other" / name)
    _one_skipped(open_reader("vos", root=root), f"other/{name}", NOT_REGULAR)
    (root / folder / "other" / name).unlink()
    (root / folder / "other" / name).mkdir()  # a folder named like an image
    _one_skipped(open_reader("vos", root=root), f"other/{name}", "a folder")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", ["json", "mp4"])
def test_sav_links_and_fifos(tmp_path: Path, target: str) -> None:
    root = tmp_path / "d"
    make_sav(root, "sav_000002")
    make_sav(root, "sav_000003")
    name = "sav_000003_manual.json" if target == "json" else "sav_000003.mp4"
    shutil.copyfile(root / name, tmp_path / name)
    _relink(root / name, tmp_path / name)
    _one_skipped(open_reader("sav", root=root), name, OUTSIDE)
    _fifo(root / name)
    _one_skipped(open_reader("sav", root=root), name, NOT_REGULAR)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", ["mp4 link", "mask folder link", "mask link", "mask fifo"])
def test_mp4_masks_links_and_fifos(tmp_path: Path, target: str) -> None:
    root = tmp_path / "d"
    (root / "v_mask").mkdir(parents=True)
    write_mp4(root / "v.mp4", 3, 32, 24)
    for i in range(3):
        Image.fromarray(np.full((24, 32), 255 * (i % 2 == 0), np.uint8)).save(
            root / "v_mask" / f"{i:05d}.png"
        )
    Image.fromarray(np.full((24, 32), 255, np.uint8)).save(root / "v_mask" / "00001.png")
    assert dry_run(open_reader("mp4_masks", root=root))["videos"] == 1
    if target == "mp4 link":
        shutil.move(root / "v.mp4", tmp_path / "v.mp4")
        (root / "v.mp4").symlink_to(tmp_path / "v.mp4")
        needles = ("v.mp4", OUTSIDE)
    elif target == "mask folder link":
        shutil.move(root / "v_mask", tmp_path / "v_mask")
        (root / "v_mask").symlink_to(tmp_path / "v_mask")
        needles = ("v_mask", OUTSIDE)
    elif target == "mask link":
        shutil.copyfile(root / "v_mask" / "00001.png", tmp_path / "m.png")
        _relink(root / "v_mask" / "00001.png", tmp_path / "m.png")
        needles = ("v_mask/00001.png", OUTSIDE)
    else:
        _fifo(root / "v_mask" / "00001.png")
        needles = ("v_mask/00001.png", NOT_REGULAR)
    _one_skipped(open_reader("mp4_masks", root=root), *needles)
    if OUTSIDE in needles:  # links out of the folder are fine when asked for
        summary = dry_run(open_reader("mp4_masks", root=root, allow_links_outside=True))
        assert summary["videos"] == 1 and not summary["skipped"]


def test_deeply_nested_json_is_a_clear_error(tmp_path: Path) -> None:
    ann = make_ytvis(tmp_path)
    ann.write_text("[" * 100_000)
    with pytest.raises(DatasetError, match=r"annotations\.json: JSON nested too deeply"):
        open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages")
    ann.write_text('{"videos": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DatasetError, match=r"annotations\.json: JSON nested too deeply"):
        open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages")
    sav = tmp_path / "sav"
    make_sav(sav, "sav_000002")
    make_sav(sav, "sav_000003")
    (sav / "sav_000003_manual.json").write_text('{"masklet": ' + "[" * 100_000 + "}")
    _one_skipped(open_reader("sav", root=sav), "sav_000003_manual.json: JSON nested too deeply")


def test_json_size_is_bounded_before_reading(tmp_path: Path) -> None:
    ann = make_ytvis(tmp_path)
    size = ann.stat().st_size
    kwargs = {"annotations": ann, "frames": tmp_path / "JPEGImages"}
    with pytest.raises(DatasetError, match=rf"annotations\.json: .* {size} bytes, above the limit"):
        open_reader("ytvis", **kwargs, max_json_bytes=size - 1)
    assert open_reader("ytvis", **kwargs, max_json_bytes=size).list_videos() == ["1", "2"]
    make_sav(tmp_path / "sav")
    reader = open_reader("sav", root=tmp_path / "sav", max_json_bytes=100)
    with pytest.raises(BadVideo, match=r"sav_000002_manual\.json: .* above the limit of 100"):
        reader.load("sav_000002")
    ann.write_text('{"videos": [' + "1" * 5000 + "]}")  # more digits than Python converts
    with pytest.raises(DatasetError, match=r"annotations\.json: invalid JSON value"):
        open_reader("ytvis", **kwargs)


@pytest.mark.parametrize(
    ("source", "option", "value"),
    [
        ("ytvis", "fps", float("nan")),
        ("ytvis", "fps", 0),
        ("vos", "fps", float("inf")),
        ("vos", "mask_size_tolerance", -1),
        ("sav", "annot_every", 0),
        ("sav", "annot_every", 2.5),
        ("mp4_masks", "mask_size_tolerance", 10**9),
    ],
)
def test_bad_reader_options_are_dataset_errors(
    tmp_path: Path, source: str, option: str, value: object
) -> None:
    roots = {
        "ytvis": {"annotations": tmp_path / "a.json", "frames": tmp_path},
        "vos": {"root": tmp_path},
        "sav": {"root": tmp_path},
        "mp4_masks": {"root": tmp_path},
    }
    (tmp_path / "a.json").write_text(json.dumps({"videos": []}))
    with pytest.raises(DatasetError, match=rf"source\.{option}: expected"):
        open_reader(source, **roots[source], **{option: value})
