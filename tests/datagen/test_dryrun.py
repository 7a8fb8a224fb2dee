"""Dry run: the function on real and synthetic data; ``genprop-data dry_run=true`` end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from synth_datasets import make_ytvis, write_frames

from datagen.dryrun import dry_run
from datagen.readers import open_reader

REPO = Path(__file__).resolve().parents[2]


def _cli(*overrides: str, cwd: Path) -> tuple[int, dict | None, str]:
    """Run ``genprop-data dry_run=true ...`` in ``cwd``: (exit status, last-line JSON, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "datagen.cli", "dry_run=true", "progress=false", *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, (json.loads(lines[-1]) if lines else None), proc.stderr


def test_dry_run_real_vos(shared_data: Path) -> None:
    summary = dry_run(open_reader("vos", root=shared_data / "vos"), progress=False)
    assert summary["videos"] == 3
    assert summary["objects"] == 6  # bmx 1, tennis 1, judo 4
    assert summary["annotated_frames"] == 80 + 70 + 4
    assert summary["frames"] == 80 + 70 + 16
    assert summary["masks"] == 80 + 70 + 4
    assert summary["frames_checked"] == 80 + 70 + 16
    assert summary["skipped"] == [] and summary["problems"] == 0


def test_dry_run_without_frames_and_limited(tmp_path: Path) -> None:
    ann = make_ytvis(tmp_path)
    shutil.rmtree(tmp_path / "JPEGImages" / "vid_b")
    reader = open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages")
    masks_only = dry_run(reader, check_frames=False, progress=False)
    assert masks_only["videos"] == 2 and masks_only["frames_checked"] == 0
    assert dry_run(reader, progress=False)["videos"] == 1  # frames checked: vid_b is missing
    assert dry_run(reader, progress=False, max_videos=1)["skipped"] == []


def test_cli_real_vos_writes_nothing(shared_data: Path, tmp_path: Path) -> None:
    status, summary, _ = _cli("source=vos", f"source.root={shared_data / 'vos'}", cwd=tmp_path)
    assert status == 0
    assert (summary["videos"], summary["objects"], summary["annotated_frames"]) == (3, 6, 154)
    assert list(tmp_path.iterdir()) == []  # no outputs/, .hydra/ or log files


def test_cli_real_ytvis_with_placeholder_frames(shared_data: Path, tmp_path: Path) -> None:
    ann = shared_data / "ytvis" / "0043f083b5_ytvis_format_DERIVED.json"
    video = json.loads(ann.read_text())["videos"][0]
    frames = tmp_path / "JPEGImages"
    write_frames(frames, video["file_names"], video["width"], video["height"])
    status, summary, _ = _cli(
        "source=ytvis", f"source.annotations={ann}", f"source.frames={frames}", cwd=tmp_path
    )
    assert status == 0
    assert (summary["videos"], summary["objects"], summary["annotated_frames"]) == (1, 2, 20)
    assert summary["masks"] == 18 + 12  # nulls on frames 0-1 and 0-7 are absences
    assert summary["skipped"] == [] and summary["problems"] == 0


def test_cli_toyworld_layout_with_one_bad_video(tmp_path: Path) -> None:
    make_ytvis(tmp_path / "world")
    (tmp_path / "world" / "JPEGImages" / "vid_a" / "00010.png").unlink()
    args = ("source=toyworld", "source.root=world", "clip.frames=3")
    status, summary, stderr = _cli(*args, cwd=tmp_path)
    assert status == 0
    assert summary["source"] == "toyworld" and summary["videos"] == 1
    assert (summary["clip_frames"], summary["videos_with_clip"]) == (3, 1)
    assert summary["skipped"][0]["video"] == "1"
    assert "file_names[2]" in summary["skipped"][0]["reason"]
    assert summary["dropped_objects"] == []  # vid_a's crowd track went with the skipped video
    assert summary["problems"] == 1
    assert "skipped video 1" in stderr


@pytest.mark.parametrize("case", ["no_usable_video", "missing_file", "missing_option"])
def test_cli_unusable_input_exits_non_zero(tmp_path: Path, case: str) -> None:
    if case == "no_usable_video":
        ann = make_ytvis(tmp_path)
        shutil.rmtree(tmp_path / "JPEGImages")
        (tmp_path / "JPEGImages").mkdir()
        args = ["source=ytvis", f"source.annotations={ann}", "source.frames=JPEGImages"]
        status, summary, stderr = _cli(*args, cwd=tmp_path)
        assert status == 1 and summary["videos"] == 0 and len(summary["skipped"]) == 2
        assert "no usable videos" in stderr
    elif case == "missing_file":
        args = ["source=ytvis", "source.annotations=missing.json", f"source.frames={tmp_path}"]
        status, summary, stderr = _cli(*args, cwd=tmp_path)
        assert status == 2 and summary is None
        assert "annotation file not found: missing.json" in stderr
    else:
        status, summary, stderr = _cli("source=sav", cwd=tmp_path)
        assert status == 2 and "missing required option source.root" in stderr


def test_cli_predicts_a_run_without_samples(tmp_path: Path) -> None:
    make_ytvis(tmp_path / "world")  # 3-frame videos
    status, summary, stderr = _cli("source=toyworld", "source.root=world", cwd=tmp_path)
    assert status == 1 and summary["videos"] == 2 and summary["videos_with_clip"] == 0
    assert "this run would produce no samples" in stderr and "clip.frames=16" in stderr
    status, summary, _ = _cli(
        "source=toyworld", "source.root=world", "clip.stride=[1,2]", cwd=tmp_path
    )
    assert status == 1
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("clip.frames=0", "clip.frames"),
        ("clip.size=[0,8]", "clip.size"),
        ("num_samples=-1", "num_samples"),
    ],
)
def test_cli_dry_run_refuses_bad_options(tmp_path: Path, override: str, key: str) -> None:
    make_ytvis(tmp_path / "world")
    status, summary, stderr = _cli("source=toyworld", "source.root=world", override, cwd=tmp_path)
    assert status == 2 and summary is None
    assert stderr.strip().splitlines() == [stderr.strip()] and f"error: {key}:" in stderr
