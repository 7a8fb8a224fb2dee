"""Hostile annotation files: any mutation of a valid file gives valid records or a clear error.

For each reader, a valid tiny dataset (``synth_datasets``) is mutated at random (a value
replaced by NaN, infinity, a huge or negative number, a string, a container or a deep list; a
key or list item deleted; a list item duplicated; the file truncated) and everything the reader
promises is exercised: open, list, load, every mask, every frame. The only exceptions allowed
are :class:`DatasetError` / :class:`BadVideo` whose message names the file; anything else (or a
crash in a C decoder, which kills the test process) is a bug.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from synth_datasets import make_sav, make_vos, make_ytvis, write_mp4

from datagen.dryrun import dry_run
from datagen.readers import open_reader
from datagen.record import BadVideo, DatasetError, Reader, VideoRecord

HOSTILE_VALUES: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1,
    0,
    0.5,
    2**31,
    10**40,
    10**400,
    -(2**63),
    True,
    None,
    "",
    "7",
    "x" * 300,
    [],
    {},
    [1, 2],
    {"size": [1, 1]},
    [[math.nan, 1e308, -1e308, 0, 5, 5]],
    json.loads("[" * 200 + "]" * 200),
]
HOSTILE = settings(
    max_examples=40,
    deadline=10_000,  # ms per example; a hang or a runaway allocation fails
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def paths_in(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) to a node of a JSON document, root excluded."""
    out: list[tuple] = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for k, v in items:
        out.append((*prefix, k))
        out += paths_in(v, (*prefix, k))
    return out


def mutate(doc: Any, data: st.DataObject) -> bytes:
    """Apply 1-3 random mutations to a copy of ``doc``; returns the file bytes."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = paths_in(doc)
        if not paths:
            break
        shallow = [p for p in paths if len(p) <= 3]  # the fields of videos / tracks / categories
        pool = shallow if shallow and data.draw(st.booleans(), label="shallow") else paths
        path = data.draw(st.sampled_from(pool), label="path")
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = data.draw(st.sampled_from(["replace", "replace", "delete", "duplicate"]), label="op")
        if op == "replace":
            parent[key] = copy.deepcopy(data.draw(st.sampled_from(HOSTILE_VALUES), label="value"))
        elif op == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    text = json.dumps(doc).encode()
    if data.draw(st.integers(0, 9), label="truncate") == 0:
        text = text[: data.draw(st.integers(0, max(len(text) - 1, 0)), label="cut")]
    return text


def assert_names(message: str, names: tuple[str, ...]) -> None:
    assert "\n" not in message, message
    assert any(n in message for n in names), f"message names none of {names}: {message}"


def check_record(rec: VideoRecord) -> None:
    """Everything a record promises, decoded and checked (lazy BadVideo is allowed)."""
    assert isinstance(rec.width, int) and isinstance(rec.height, int)
    assert rec.fps is None or (math.isfinite(rec.fps) and 0 < rec.fps <= 1000)
    for obj in rec.objects:
        for i in rec.annotated:
            m = obj.mask(i)
            if m is None:
                assert i not in obj.present
                continue
            assert m.dtype == bool and m.shape == (rec.height, rec.width) and m.any()
            assert i in obj.present
    frames = list(rec.frames())
    assert len(frames) == rec.num_frames
    for f in frames:
        assert f.dtype == np.uint8 and f.shape == (rec.height, rec.width, 3)


def exercise(open_fn: Callable[[], Reader], names: tuple[str, ...]) -> int:
    """Open, load and decode everything; returns the number of valid records."""
    try:
        reader = open_fn()
    except DatasetError as e:
        assert_names(str(e), names)
        return 0
    good = 0
    for vid in reader.list_videos():
        try:
            check_record(reader.load(vid))
            good += 1
        except BadVideo as e:
            assert_names(e.reason, names)
    return good


@pytest.fixture(scope="module")
def ytvis_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ytvis")
    return root, json.loads(make_ytvis(root).read_text())


@pytest.fixture(scope="module")
def sav_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sav")
    return root, json.loads(make_sav(root).read_text())


@HOSTILE
@given(data=st.data())
def test_ytvis_mutations(ytvis_base: tuple[Path, dict], data: st.DataObject) -> None:
    root, doc = ytvis_base
    ann = Path(tempfile.mkstemp(suffix="_ann.json", dir=root)[1])
    ann.write_bytes(mutate(doc, data))
    exercise(lambda: open_reader("ytvis", annotations=ann, frames=root / "JPEGImages"), (ann.name,))


@HOSTILE
@given(data=st.data())
def test_sav_mutations(sav_base: tuple[Path, dict], data: st.DataObject) -> None:
    base, doc = sav_base
    root = Path(tempfile.mkdtemp(dir=base))
    shutil.copyfile(base / "sav_000002.mp4", root / "sav_000002.mp4")
    (root / "sav_000002_manual.json").write_bytes(mutate(doc, data))
    exercise(lambda: open_reader("sav", root=root), ("sav_000002_manual.json", "sav_000002.mp4"))


MASK_MODES = ["P", "L", "1", "I;16", "RGB", "LA", "F"]


def mutate_image(path: Path, data: st.DataObject) -> None:
    """Replace an image by a random one of any mode and size, or corrupt its bytes."""
    how = data.draw(st.sampled_from(["image", "truncate", "flip"]), label="how")
    if how == "image":
        mode = data.draw(st.sampled_from(MASK_MODES), label="mode")
        w = data.draw(st.sampled_from([20, 19, 23, 1]), label="w")
        h = data.draw(st.sampled_from([16, 15, 18, 1]), label="h")
        seed = data.draw(st.integers(0, 2**16), label="seed")
        levels = data.draw(st.sampled_from([2, 3, 256]), label="levels")
        values = np.random.default_rng(seed).integers(0, levels, (h, w)) * (255 // levels)
        im = Image.fromarray(values.astype(np.uint8)).convert(mode)
        im.save(path, format="TIFF" if mode == "F" else "PNG")
        return
    raw = path.read_bytes()
    if not raw:
        return
    at = data.draw(st.integers(0, len(raw) - 1), label="offset")
    tail = raw[at + 1 :] if how == "flip" else b""
    path.write_bytes(raw[:at] + (bytes([raw[at] ^ 0xFF]) if how == "flip" else b"") + tail)


@HOSTILE
@given(data=st.data())
def test_vos_mask_and_frame_mutations(tmp_path_factory, data: st.DataObject) -> None:
    """Mask / frame PNGs replaced by random images of any mode and size, or corrupted bytes."""
    root = make_vos(Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        sub = data.draw(st.sampled_from(["Annotations", "JPEGImages"]), label="folder")
        path = root / sub / "seq" / f"{data.draw(st.integers(0, 3), label='frame'):05d}"
        mutate_image(path.with_suffix(".png" if sub == "Annotations" else ".jpg"), data)
    exercise(lambda: open_reader("vos", root=root), (str(root),))


@pytest.fixture(scope="module")
def mp4_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mp4_masks")
    write_mp4(root / "v.mp4", 3, 20, 16)
    (root / "v_mask").mkdir()
    for i in range(3):
        ids = np.zeros((16, 20), np.uint8)
        ids[2 + i : 9, 3:12] = 1
        Image.fromarray(ids).save(root / "v_mask" / f"{i:05d}.png")
    return root


@settings(HOSTILE, max_examples=25)
@given(data=st.data())
def test_mp4_masks_mask_and_video_mutations(mp4_base: Path, data: st.DataObject) -> None:
    root = Path(tempfile.mkdtemp(dir=mp4_base))
    shutil.copytree(mp4_base / "v_mask", root / "v_mask")
    shutil.copyfile(mp4_base / "v.mp4", root / "v.mp4")
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        if data.draw(st.integers(0, 4), label="target") == 0:
            raw = (root / "v.mp4").read_bytes()
            cut = data.draw(st.integers(0, max(len(raw) - 1, 0)), label="cut")
            (root / "v.mp4").write_bytes(raw[:cut])
        else:
            mutate_image(root / "v_mask" / f"{data.draw(st.integers(0, 2)):05d}.png", data)
    exercise(lambda: open_reader("mp4_masks", root=root), (str(root),))


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=lambda v: repr(v)[:20])
@pytest.mark.parametrize(
    "field",
    [
        ("videos", 1, "width"),
        ("videos", 1, "height"),
        ("videos", 1, "length"),
        ("videos", 1, "id"),
        ("videos", 1, "fps"),
        ("videos", 1, "file_names", 1),
        ("annotations", 3, "id"),
        ("annotations", 3, "category_id"),
        ("annotations", 3, "iscrowd"),
        ("annotations", 3, "segmentations", 1, "size", 0),
        ("annotations", 3, "segmentations", 1, "counts"),
        ("annotations", 1, "segmentations", 0, 0, 3),
    ],
    ids=lambda f: ".".join(map(str, f)),
)
def test_every_ytvis_field_with_every_hostile_value(
    ytvis_base: tuple[Path, dict], field: tuple, value: Any
) -> None:
    """Each field of video 2 / track 20 (or track 11's polygon) with each hostile value: the
    other video stays usable, and the dry run reports the bad one naming file and field."""
    root, doc = ytvis_base
    doc = copy.deepcopy(doc)
    parent = doc
    for k in field[:-1]:
        parent = parent[k]
    parent[field[-1]] = copy.deepcopy(value)
    ann = Path(tempfile.mkstemp(suffix="_ann.json", dir=root)[1])
    ann.write_text(json.dumps(doc))
    reader = open_reader("ytvis", annotations=ann, frames=root / "JPEGImages")
    summary = dry_run(reader, progress=False)
    assert summary["videos"] >= 1, summary["skipped"]
    assert summary["videos"] + len(summary["skipped"]) == len(reader.list_videos())
    for skipped in summary["skipped"]:
        assert not skipped["reason"].startswith("unexpected"), skipped
        assert_names(skipped["reason"], (ann.name,))


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e308, -1, 0, 10**400, "7", [], None])
@pytest.mark.parametrize(
    "field",
    [
        ("video_width",),
        ("video_frame_count",),
        ("video_duration",),
        ("masklet_id", 0),
        ("masklet", 1, 0, "size", 1),
        ("masklet", 2, 0),
    ],
    ids=lambda f: ".".join(map(str, f)),
)
def test_every_sav_field_with_hostile_values(sav_base: tuple[Path, dict], field, value) -> None:
    """One SA-V video with a hostile field next to a good one: the dry run reports the bad
    one naming file and field (or accepts a harmless value), and keeps the good one."""
    base, doc = sav_base
    doc = copy.deepcopy(doc)
    parent = doc
    for k in field[:-1]:
        parent = parent[k]
    parent[field[-1]] = copy.deepcopy(value)
    root = Path(tempfile.mkdtemp(dir=base))
    for vid in ("sav_000002", "sav_000003"):
        shutil.copyfile(base / "sav_000002.mp4", root / f"{vid}.mp4")
    shutil.copyfile(base / "sav_000002_manual.json", root / "sav_000002_manual.json")
    (root / "sav_000003_manual.json").write_text(json.dumps(doc))
    summary = dry_run(open_reader("sav", root=root), progress=False)
    assert summary["videos"] >= 1
    for skipped in summary["skipped"]:
        assert skipped["video"] == "sav_000003"
        assert not skipped["reason"].startswith("unexpected"), skipped
        assert_names(skipped["reason"], ("sav_000003_manual.json", "sav_000003.mp4"))
