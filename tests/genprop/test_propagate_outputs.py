"""``genprop-propagate`` never writes over its inputs, and writes each result whole: a folder of
only the new frames, in place only when the run succeeds, never deleting files it did not write."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genprop import GenPropModel, preset
from genprop.cli.propagate import main
from genprop.inference.outputs import (
    MARKER,
    FramesOutput,
    OutputPathError,
    check_output_paths,
)
from genprop.inference.video_io import list_frame_files, read_video, write_frames_dir, write_video


@pytest.fixture
def case(tmp_path: Path) -> dict[str, Path]:
    """A 6-frame 16x16 input (frames folder and mp4), its edit and a saved tiny model."""
    video = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    write_frames_dir(tmp_path / "frames", video)
    write_video(tmp_path / "in.mp4", video, fps=8, codec="lossless")
    Image.fromarray(video[0]).save(tmp_path / "edit.png")
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "model")
    return {
        "dir": tmp_path,
        "frames": tmp_path / "frames",
        "mp4": tmp_path / "in.mp4",
        "edit": tmp_path / "edit.png",
        "model": tmp_path / "model",
    }


def _argv(c: dict[str, Path], **over: object) -> list[str]:
    opts = {
        "--model": c["model"],
        "--video": c["frames"],
        "--first-frame": c["edit"],
        "--task": "removal",
        "--out": c["dir"] / "out",
        "--steps": 1,
    } | over
    return [str(x) for kv in opts.items() for x in kv]


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], *paths: Path) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    # A run that fails midway has cleared its progress bar (carriage returns) before the error.
    err = capsys.readouterr().err.rsplit("\r", 1)[-1].strip()
    assert len(err.splitlines()) == 1 and err.startswith("genprop-propagate: error: "), err
    for p in paths:
        assert str(p.resolve()) in err, (p, err)
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_out_equal_to_the_input_video_is_refused(case, capsys) -> None:
    before = case["mp4"].read_bytes()
    argv = _argv(case, **{"--video": case["mp4"], "--out": case["mp4"]})
    _refused(capsys, argv, case["mp4"])
    assert case["mp4"].read_bytes() == before


def test_out_through_a_symlink_to_the_input_is_refused(case, capsys) -> None:
    link = case["dir"] / "link.mp4"
    link.symlink_to(case["mp4"])
    before = case["mp4"].read_bytes()
    _refused(capsys, _argv(case, **{"--video": case["mp4"], "--out": link}), case["mp4"])
    assert case["mp4"].read_bytes() == before


@pytest.mark.parametrize("where", ["frames", "frames/sub", "frames/edited.mp4"])
def test_out_into_the_input_frames_folder_is_refused(case, capsys, where: str) -> None:
    before = _snapshot(case["frames"])
    out = case["dir"] / where
    _refused(capsys, _argv(case, **{"--out": out}), out, case["frames"])
    assert _snapshot(case["frames"]) == before


def test_out_folder_holding_the_edited_first_frame_is_refused(case, capsys) -> None:
    edits = case["dir"] / "edits"
    edits.mkdir()
    edit = case["edit"].rename(edits / "edit.png")
    argv = _argv(case, **{"--out": edits, "--first-frame": edit})
    err = _refused(capsys, argv, edits, edit)
    assert "--first-frame" in err and "--out" in err
    assert edit.is_file()


@pytest.mark.parametrize(
    ("out", "masks"), [("res", "res/masks"), ("res/sub", "res"), ("res.mp4", "res.mp4/m")]
)
def test_masks_out_inside_out_or_out_inside_masks_out_is_refused(
    case, capsys, out: str, masks: str
) -> None:
    argv = _argv(case, **{"--out": case["dir"] / out, "--regions-out": case["dir"] / masks})
    err = _refused(capsys, argv, case["dir"] / out, case["dir"] / masks)
    assert "overlap" in err and "--regions-out" in err


def test_masks_out_equal_to_out_is_refused_naming_both(case, capsys) -> None:
    out = case["dir"] / "result"
    err = _refused(capsys, _argv(case, **{"--out": out, "--masks-out": out}), out)
    assert "--out" in err and "--masks-out" in err


def test_a_longer_previous_result_is_replaced_whole(case, capsys) -> None:
    out, masks = case["dir"] / "out", case["dir"] / "masks"
    assert main(_argv(case, **{"--masks-out": masks})) == 0
    assert len(list_frame_files(out)) == 6 and (out / MARKER).is_file()
    assert main(_argv(case, **{"--masks-out": masks, "--max-frames": 3})) == 0
    for folder in (out, masks):
        assert sorted(p.name for p in folder.iterdir()) == [
            MARKER,
            "00000.png",
            "00001.png",
            "00002.png",
        ]
    assert read_video(out).frames.shape[0] == 3
    leftovers = [p.name for p in case["dir"].iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_folder_of_foreign_files_is_refused_and_kept(case, capsys) -> None:
    out = case["dir"] / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    _refused(capsys, _argv(case, **{"--out": out}), out)
    assert (out / "notes.txt").read_text() == "keep me"
    # A previous result with a file added since is not ours to replace either.
    assert main(_argv(case, **{"--out": case["dir"] / "res", "--max-frames": 2})) == 0
    (case["dir"] / "res" / "notes.txt").write_text("mine")
    err = _refused(capsys, _argv(case, **{"--out": case["dir"] / "res"}))
    assert "notes.txt" in err
    assert len(list_frame_files(case["dir"] / "res")) == 2


def test_an_empty_existing_folder_is_a_fine_target(case) -> None:
    (case["dir"] / "empty").mkdir()
    assert main(_argv(case, **{"--out": case["dir"] / "empty", "--max-frames": 2})) == 0
    assert len(list_frame_files(case["dir"] / "empty")) == 2


def test_a_failed_run_leaves_the_previous_results_as_they_were(case, capsys) -> None:
    out, mp4 = case["dir"] / "out", case["dir"] / "out.mp4"
    assert main(_argv(case, **{"--max-frames": 2})) == 0
    assert main(_argv(case, **{"--out": mp4, "--max-frames": 2})) == 0
    before, mp4_before = _snapshot(out), mp4.read_bytes()
    # Frame 4 of the input is corrupt: the run fails after writing its first chunk.
    (case["frames"] / "00004.png").write_bytes(b"not a png")
    for target in (out, mp4):
        err = _refused(capsys, _argv(case, **{"--out": target}))
        assert "00004.png" in err and "--video must be" in err
    assert _snapshot(out) == before and mp4.read_bytes() == mp4_before
    assert [p.name for p in case["dir"].iterdir() if p.name.startswith(".")] == []


def test_an_mp4_is_written_to_a_temporary_file_then_renamed(case, monkeypatch) -> None:
    mp4 = case["dir"] / "out.mp4"
    seen: list[bool] = []
    real_replace = os.replace

    def watching_replace(src, dst):
        seen.append(Path(dst) == mp4 and not mp4.exists() and Path(src).parent == mp4.parent)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    assert main(_argv(case, **{"--out": mp4, "--max-frames": 2})) == 0
    assert seen == [True]
    assert read_video(mp4).frames.shape == (2, 16, 16, 3)


def test_check_output_paths_names_both_paths() -> None:
    root = Path("/data")
    ins = {"--video": root / "clip", "--first-frame": root / "edit.png"}
    with pytest.raises(OutputPathError, match=r"--out /data/clip/x lies inside --video /data/clip"):
        check_output_paths(ins, {"--out": root / "clip" / "x"})
    with pytest.raises(OutputPathError, match=r"--regions-out .* and --masks-out .* overlap"):
        check_output_paths(
            ins,
            {"--out": root / "o.mp4", "--regions-out": root / "m" / "r", "--masks-out": root / "m"},
        )
    with pytest.raises(OutputPathError, match=r"--out /data is a folder that holds --video"):
        check_output_paths(ins, {"--out": root})
    check_output_paths(ins, {"--out": root / "clip.mp4", "--masks-out": root / "clipmasks"})


def test_replacing_a_result_deletes_only_our_files(tmp_path: Path) -> None:
    target = tmp_path / "res"
    first = FramesOutput(target, "masks", flag="--masks-out")
    first.write(np.zeros((3, 4, 4), np.float32))
    first.commit()
    # A file that turns up in the old result while the new one is written is kept, not deleted.
    second = FramesOutput(target, "masks", flag="--masks-out")
    second.write(np.ones((1, 4, 4), np.float32))
    (target / "late.txt").write_text("mine")
    with pytest.raises(OutputPathError, match=r"late\.txt"):
        second.commit()
    second.discard()
    assert (target / "late.txt").read_text() == "mine"
    assert len(list_frame_files(target)) == 3
