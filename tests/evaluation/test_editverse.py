"""EditVerseBench edited-first-frame board: the test.json reader, the CLIP scores and the report, on
a tiny made-up benchmark folder with a random-weight local CLIP (no download)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_folders import write_tiny_clip

from evaluation.boards import editverse
from evaluation.boards.common import BoardError
from evaluation.clip_score import ClipScorer
from genprop.inference.video_io import write_frames_dir, write_video

T, H, W = 4, 32, 32


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def _source(seed: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: a textured square moving right on a gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    bg = np.stack([x * 6, y * 6, np.full_like(x, 90)], -1).astype(np.uint8)
    patch = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    video = np.repeat(bg[None], T, axis=0)
    for t in range(T):
        video[t, 10:18, 6 + 2 * t : 14 + 2 * t] = patch
    return video


def write_bench(root: Path) -> dict[str, np.ndarray]:
    """An EditVerseBench folder: entry 0 (edited frame as PNG), entry 3 (as a one-frame mp4) in
    the track; entry 1 of another track; entry 2 in the track with its source video missing."""
    (root / "videos").mkdir(parents=True)
    (root / "edited_first_frame").mkdir()
    arrays = {}
    for key, name in (("0", "v0"), ("3", "v3")):
        src = _source(int(key))
        write_video(root / "videos" / f"{name}.mp4", src, 24, codec="lossless")
        edited = src[0].copy()
        edited[10:18, 6:14] = (255, 255, 0)  # the user's edit: the square turned yellow
        arrays[key] = edited
        if key == "0":
            from PIL import Image

            Image.fromarray(edited).save(root / "edited_first_frame" / f"{name}.png")
        else:
            write_video(
                root / "edited_first_frame" / f"{name}.mp4", edited[None], 24, codec="lossless"
            )
    index = {
        "0": {"<text>": "<video1> make the square yellow", "<video1>": "videos/v0.mp4",
              "<image1>": "edited_first_frame/v0.png", "target_prompt": "a yellow square",
              "type": "first frame"},
        "1": {"<text>": "<video1> add a hat", "<video1>": "videos/v0.mp4",
              "target_prompt": "a hat", "type": "add object"},
        "2": {"<video1>": "videos/gone.mp4", "<image1>": "edited_first_frame/v0.png",
              "target_prompt": "a square"},
        "3": {"<video1>": "videos/v3.mp4", "<video2>": "edited_first_frame/v3.mp4",
              "target_prompt": "a yellow square"},
    }  # fmt: skip
    (root / "test.json").write_text(json.dumps(index))
    return arrays


def _args(tmp_path: Path, data: Path, **kw) -> argparse.Namespace:
    base = {
        "data": data, "methods": [], "model": None, "genprop": None, "out": tmp_path / "out",
        "baselines": "all", "lpips": None, "dinov2": None, "clip": None, "device": "cpu",
    }  # fmt: skip
    return argparse.Namespace(**(base | kw))


def test_temporal_consistency_clamps_and_scales() -> None:
    e1, e2 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    assert editverse.temporal_consistency(torch.stack([e1, e1, e2])) == pytest.approx(50.0)
    assert editverse.temporal_consistency(torch.stack([e1, -e1])) == 0.0  # clamped at 0
    assert np.isnan(editverse.temporal_consistency(e1[None]))


def test_clip_scores_match_an_independent_computation(tiny_clip: Path) -> None:
    clip = ClipScorer(tiny_clip)
    frames = np.random.default_rng(0).integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    scores = editverse.clip_scores(clip, frames, "a yellow square")
    scale = float(clip.model.logit_scale.detach().exp())
    expected = scale * clip.text_similarity(frames, "a yellow square")
    assert scores["CLIP_text"] == pytest.approx(expected, rel=1e-5)
    assert scores["CLIP_temporal"] < 100.0
    still = editverse.clip_scores(clip, np.repeat(frames[:1], T, axis=0), "a yellow square")
    assert still["CLIP_temporal"] == pytest.approx(100.0, abs=1e-4)


def test_reader_keeps_the_track_and_counts_the_rest(tmp_path: Path) -> None:
    edited = write_bench(tmp_path / "EditVerseBench")
    entries, others, problems = editverse.list_entries(tmp_path)  # the parent folder also works
    assert [e.id for e in entries] == ["0", "3"] and others == 1
    assert len(problems) == 1 and "entry '2' skipped" in problems[0] and "gone.mp4" in problems[0]
    assert "is missing" in problems[0]
    loaded = [editverse.load_entry(e) for e in entries]
    for video in loaded:
        assert video.source.shape == (T, H, W, 3) and video.prompt == "a yellow square"
        np.testing.assert_array_equal(video.first, edited[video.id])


def test_board_scores_methods_and_baselines(tmp_path: Path, tiny_clip: Path) -> None:
    write_bench(tmp_path / "bench")
    method = tmp_path / "mine"
    write_video(method / "0" / "generate.mp4", _source(0), 24, codec="lossless")
    write_frames_dir(method / "3", _source(3))
    args = _args(tmp_path, tmp_path / "bench", methods=[("mine", method)], clip=tiny_clip)
    paths = editverse.run(args)
    report = json.loads(paths["json"].read_text())
    assert report["methods"] == ["paste_first_frame", "flow_propagation", "mine"]
    for method_scores in report["per_video"].values():
        assert set(method_scores) == {"0", "3"}
        for scores in method_scores.values():
            assert scores["CLIP_text"] is not None and 0 <= scores["CLIP_temporal"] <= 100.0
    assert report["errors"][0].endswith("gone.mp4 is missing")
    assert report["notes"][0].startswith("3 entries of test.json are in the edited-first-frame")
    pasted = args.out / "baselines" / "paste_first_frame" / "0"
    assert len(list(pasted.glob("*.png"))) == T
    assert "| mine | 2 |" in paths["md"].read_text()


def test_board_without_clip_notes_it_and_bad_index_is_one_line(tmp_path: Path) -> None:
    write_bench(tmp_path / "bench")
    report = json.loads(editverse.run(_args(tmp_path, tmp_path / "bench"))["json"].read_text())
    blank = {"CLIP_text": None, "CLIP_temporal": None}
    assert report["per_video"]["paste_first_frame"]["0"] == blank
    assert "CLIP_text/CLIP_temporal unavailable: no --clip folder given" in report["notes"]
    with pytest.raises(BoardError, match=r"no test\.json"):
        editverse.run(_args(tmp_path, tmp_path / "bench" / "videos"))
    (tmp_path / "bench" / "test.json").write_text("[1, 2]")
    with pytest.raises(BoardError, match=r"test\.json: expected a JSON object"):
        editverse.run(_args(tmp_path, tmp_path / "bench"))
    escaping = {"<video1>": "../../x.mp4", "<image1>": "edited_first_frame/x.png"}
    (tmp_path / "bench" / "test.json").write_text(
        json.dumps({"9": escaping | {"target_prompt": "p"}})
    )
    _, _, problems = editverse.list_entries(tmp_path / "bench")
    assert "points outside" in problems[0]


def test_cli_runs_the_board_and_reports_bad_data_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evaluation.cli import main

    write_bench(tmp_path / "bench")
    out = tmp_path / "out"
    argv = ["--benchmark", "editverse", "--data", str(tmp_path / "bench"), "--out", str(out)]
    assert main([*argv, "--baselines", "paste_first_frame"]) == 0
    assert "| paste_first_frame | 2 |" in (out / "metrics.md").read_text()
    capsys.readouterr()
    (tmp_path / "bench" / "test.json").write_text("{not json")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genprop-eval: error: ")
    assert "test.json" in err[0]


def test_a_source_longer_than_the_bound_is_skipped_and_counted_not_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_bench(tmp_path / "bench")
    monkeypatch.setattr(editverse, "MAX_FRAMES", T - 1)
    report = json.loads(editverse.run(_args(tmp_path, tmp_path / "bench"))["json"].read_text())
    skipped = [e for e in report["errors"] if f"more than the {T - 1} this board reads" in e]
    assert len(skipped) == 2, report["errors"]
    assert all(not scores for scores in report["per_video"].values())
