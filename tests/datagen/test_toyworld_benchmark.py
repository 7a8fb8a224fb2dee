"""Toy-world benchmark cases: exact folder contract and ground-truth properties per task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datagen.toyworld import CASE_ORDER, WorldConfig, build_case, write_benchmark
from datagen.toyworld.cli import main

CFG = WorldConfig(width=40, height=32, num_frames=6)
META_KEYS = {
    "id",
    "task",
    "prompt",
    "fps",
    "num_frames",
    "width",
    "height",
    "world_seed",
    "video_id",
    "object_ids",
    "notes",
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cases")
    return write_benchmark(out, CFG, cases_per_task=2, seed=10_000, progress=None)


def _read(folder: Path, mode: str, n: int = 6) -> np.ndarray:
    frames = []
    for t in range(n):
        with Image.open(folder / f"{t:05d}.png") as im:
            assert im.mode == mode, folder
            frames.append(np.asarray(im))
    return np.stack(frames)


def _load(cases: Path, case_id: str) -> dict[str, np.ndarray]:
    d = cases / case_id
    return {
        "input": _read(d / "input", "RGB"),
        "gt": _read(d / "gt", "RGB"),
        "edit": _read(d / "edit_mask", "L"),
        "obj": _read(d / "object_mask", "L"),
        "effect": _read(d / "effect_mask", "L"),
    }


def test_layout_exactly_per_contract(cases):
    index = json.loads((cases / "index.json").read_text())
    assert index["version"] == 1
    assert [c["id"] for c in index["cases"]] == [
        f"{t}_{i:03d}" for t in CASE_ORDER for i in range(2)
    ]
    for entry in index["cases"]:
        assert set(entry) == {"id", "task", "dir"} and entry["dir"] == entry["id"]
        d = cases / entry["dir"]
        children = {p.name for p in d.iterdir()}
        assert children == {
            "meta.json",
            "first_frame.png",
            "input",
            "gt",
            "edit_mask",
            "object_mask",
            "effect_mask",
        }
        for sub in ("input", "gt", "edit_mask", "object_mask", "effect_mask"):
            assert sorted(p.name for p in (d / sub).iterdir()) == [f"{t:05d}.png" for t in range(6)]
        meta = json.loads((d / "meta.json").read_text())
        assert set(meta) == META_KEYS
        assert (meta["task"], meta["width"], meta["height"]) == (entry["task"], 40, 32)
        assert (meta["num_frames"], meta["fps"], meta["world_seed"]) == (6, 6.0, 10_000)
        with Image.open(d / "first_frame.png") as im:
            first = np.asarray(im.convert("RGB"))
        arrays = _load(cases, entry["id"])
        assert np.array_equal(first, arrays["gt"][0])
        assert set(np.unique(arrays["edit"])) <= {0, 255}
        assert set(np.unique(arrays["obj"])) <= {0, 255}
        # Whatever the task, input and gt differ only inside the edit mask.
        changed = (arrays["input"] != arrays["gt"]).any(-1)
        assert not (changed & (arrays["edit"] == 0)).any(), entry["id"]


@pytest.mark.parametrize("task", ["removal", "insertion"])
def test_removal_and_insertion_masks_include_the_shadow(cases, task):
    for i in range(2):
        a = _load(cases, f"{task}_{i:03d}")
        edit, obj = a["edit"] > 0, a["obj"] > 0
        assert obj[0].sum() >= 0.04 * 40 * 32  # object large on frame 0
        assert not (obj & ~edit).any()  # edit ⊇ object
        assert (edit & ~obj).sum() > 0  # ... plus effects outside the object
        effect = a["effect"] > 0
        assert np.array_equal(edit, obj | effect)  # edit = object ∪ its effects, exactly
        changed = (a["input"] != a["gt"]).any(-1)
        assert changed[obj].mean() > 0.9  # the object really goes / comes
        assert changed[edit & ~obj].any()  # and so does its shadow


def test_removal_gt_is_brighter_in_the_shadow(cases):
    a = _load(cases, "removal_000")
    shadow = (a["edit"] > 0) & (a["obj"] == 0)
    assert a["gt"][shadow].astype(int).sum() > a["input"][shadow].astype(int).sum()


def test_tracking_gt_is_red_exactly_on_object_mask(cases):
    for i in range(2):
        a = _load(cases, f"tracking_{i:03d}")
        obj = a["obj"] > 0
        assert obj.any()
        assert (a["gt"][obj] == [255, 0, 0]).all()
        assert np.array_equal(a["gt"][~obj], a["input"][~obj])


def test_edit_recolours_only_the_object_and_reflection(cases):
    for i in range(2):
        a = _load(cases, f"edit_{i:03d}")
        obj = a["obj"] > 0
        changed = (a["input"] != a["gt"]).any(-1)
        assert changed[obj].mean() > 0.5
        meta = json.loads((cases / f"edit_{i:03d}" / "meta.json").read_text())
        assert meta["prompt"].startswith("make the ")


def test_outpainting_blanks_a_border_band(cases):
    for i in range(2):
        a = _load(cases, f"outpainting_{i:03d}")
        band = a["edit"] > 0
        assert np.array_equal(band, a["obj"] > 0) and band.any()
        assert (a["input"][band] == 0).all()
        assert np.array_equal(a["input"][~band], a["gt"][~band])
        edge = band[0, 0].any() or band[0, -1].any() or band[0, :, 0].any() or band[0, :, -1].any()
        assert edge


def test_cases_are_deterministic():
    index = next(i for i in range(50) if build_case("removal", "r", CFG, 10_000, i) is not None)
    a = build_case("removal", "r", CFG, 10_000, index)
    b = build_case("removal", "r", CFG, 10_000, index)
    assert np.array_equal(a.gt, b.gt) and np.array_equal(a.edit_mask, b.edit_mask)
    assert a.prompt == b.prompt and a.object_ids == b.object_ids


def test_rerun_is_a_noop(cases):
    stamp = (cases / "index.json").stat().st_mtime_ns
    messages: list[str] = []
    write_benchmark(cases, CFG, cases_per_task=2, seed=10_000, progress=messages.append)
    assert (cases / "index.json").stat().st_mtime_ns == stamp and "nothing to do" in messages[0]


def test_cli_benchmark_one_task(tmp_path):
    rc = main(
        [
            "benchmark",
            "--out",
            str(tmp_path),
            "--cases-per-task",
            "1",
            "--size",
            "32x32",
            "--frames",
            "3",
            "--tasks",
            "tracking",
        ]
    )
    assert rc == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert [c["id"] for c in index["cases"]] == ["tracking_000"]
    assert main(["benchmark", "--out", str(tmp_path), "--tasks", "dance"]) == 2
