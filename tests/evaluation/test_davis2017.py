"""``genprop-eval --benchmark davis2017``: the official semi-supervised J/F, its frame and mean
rules, the end-to-end CLI, its one-line errors and the GenProp tracking path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from davis_folders import H, T, W, id_maps, write_davis, write_ids
from genprop_helpers import one_line_error
from PIL import Image

from evaluation.boards import davis_metrics
from evaluation.boards.davis2017 import (
    TRACK_COLOURS,
    colour_objects,
    labels_from_colours,
)
from evaluation.cli import main
from evaluation.tracking import TRACK_COLOR_TOLERANCE
from genprop import GenPropModel, preset


def box(r0: int, r1: int, c0: int, c1: int, size: int = 8) -> np.ndarray:
    """``(size, size)`` bool, True on rows r0..r1 and columns c0..c1 (inclusive)."""
    m = np.zeros((size, size), bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


def test_j_and_f_match_a_hand_count_on_8x8_masks() -> None:
    gt = box(2, 5, 2, 5)  # 4x4 = 16 pixels
    pred = box(2, 3, 2, 5)  # its top half, 2x4 = 8 pixels
    # J = |gt & pred| / |gt | pred| = 8 / 16.
    assert davis_metrics.iou(gt[None], pred[None])[0] == pytest.approx(0.5)
    # F. Tolerance: ceil(0.008 * hypot(8, 8)) = ceil(0.09) = 1, so disk(1) = the 3x3 cross.
    assert davis_metrics.boundary_radius(8, 8) == 1
    # A pixel is on the boundary when it differs from its right, lower or lower-right
    # neighbour, so the boundary of a box on rows r0..r1, cols c0..c1 is the one-pixel ring of
    # rows r0-1..r1, cols c0-1..c1:
    # gt: ring of rows 1..5 x cols 1..5 = 16 pixels; pred: ring of rows 1..3 x cols 1..5 = 12.
    assert davis_metrics.seg2bmap(gt).sum() == 16
    assert davis_metrics.seg2bmap(pred).sum() == 12
    assert davis_metrics.seg2bmap(gt)[1:6, 1:6].sum() == 16  # the ring, nothing else
    # Precision: pred boundary pixels within the cross of a gt boundary pixel. Row 1 (5) and
    # (2,1), (2,5), (3,1), (3,5) (4) lie on the gt ring; (3,2) and (3,4) touch (3,1) and (3,5);
    # (3,3) touches none of (2,3), (4,3), (3,2), (3,4): 11 of 12.
    # Recall: gt boundary pixels within the cross of a pred one. Row 1 (5), (2,1), (2,5),
    # (3,1), (3,5) (4) are on the pred ring; (4,1) and (4,5) touch (3,1) and (3,5); row 5
    # (5 pixels) is two rows away: 11 of 16.
    # F = 2PR / (P + R) = 2 (11/12)(11/16) / (11/12 + 11/16) = 11/14.
    assert davis_metrics.f_measure(gt, pred) == pytest.approx(11 / 14)
    assert davis_metrics.f_measure(pred, gt) == pytest.approx(11 / 14)  # symmetric here


def test_empty_masks_follow_the_official_conventions() -> None:
    empty, obj = np.zeros((8, 8), bool), box(2, 5, 2, 5)
    assert davis_metrics.iou(empty[None], empty[None])[0] == 1.0  # nothing to find, found
    assert davis_metrics.f_measure(empty, empty) == 1.0
    assert davis_metrics.iou(obj[None], empty[None])[0] == 0.0  # a missed object
    assert davis_metrics.f_measure(obj, empty) == 0.0  # precision 1, recall 0
    assert davis_metrics.f_measure(empty, obj) == 0.0  # precision 0, recall 1


def test_statistics_mean_recall_and_decay() -> None:
    # 5 frames: bins at round(linspace(1, 5, 5)) - 1 = 0, 1, 2, 3, 4 -> first bin frames 0-1,
    # last bin frames 3-4. M = 2.5 / 5; R counts values above 0.5 (0.5 itself is not): 2 / 5;
    # D = mean(1, 1) - mean(0, 0.5) = 0.75.
    stats = davis_metrics.statistics(np.array([1.0, 1.0, 0.0, 0.0, 0.5]))
    assert stats == pytest.approx({"M": 0.5, "R": 0.4, "D": 0.75})


def test_missing_object_scores_as_empty_and_void_counts_as_background() -> None:
    gt = id_maps(2)[1:-1].copy()
    gt[gt == 255] = 0  # what read_annotations does with void
    pred = gt.copy()
    pred[pred == 2] = 0  # the method never outputs object 2
    rows = davis_metrics.score_objects(gt, pred, 2)
    assert rows[0]["J-Mean"] == 1.0 and rows[0]["F-Mean"] == 1.0
    assert rows[1]["J-Mean"] == 0.0 and rows[1]["F-Mean"] == 0.0
    # Painting the void column as object 1 is a false positive, as in the official code.
    pred = gt.copy()
    pred[:, :, W - 2 :] = 1
    j = davis_metrics.score_objects(gt, pred, 2)[0]["J-Mean"]
    assert j == pytest.approx(120 / (120 + 2 * H))


def _run(argv: list[str]) -> dict:
    assert main(argv) == 0
    out = Path(argv[argv.index("--out") + 1])
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture
def davis(tmp_path: Path) -> Path:
    write_davis(tmp_path / "DAVIS", {"alpha": 2, "beta": 1})
    return tmp_path / "DAVIS"


def _copy_annotations(davis: Path, dest: Path) -> Path:
    shutil.copytree(davis / "Annotations" / "480p", dest)
    return dest


def test_cli_end_to_end_scores_methods_baselines_and_writes_the_report(
    davis: Path, tmp_path: Path
) -> None:
    perfect = _copy_annotations(davis, tmp_path / "perfect")
    out = tmp_path / "out"
    argv = ["--benchmark", "davis2017", "--data", str(davis), "--out", str(out)]
    report = _run([*argv, "--method", f"perfect={perfect}"])
    assert report["benchmark"] == "davis2017" and report["split"] == "val"
    assert report["methods"] == ["flow_propagation", "paste_first_frame", "perfect"]
    assert report["per_video"]["perfect"]["alpha"] == {"J&F": 1.0, "J": 1.0, "F": 1.0}
    assert report["averages"]["perfect"]["J&F-Mean"] == 1.0
    assert report["averages"]["perfect"]["n"] == 3  # objects: 2 in alpha, 1 in beta
    assert set(report["per_object"]["perfect"]) == {"alpha_1", "alpha_2", "beta_1"}
    # The objects move 2 px a frame: a mask fixed at frame 0 misses part of them, flow follows.
    paste = report["averages"]["paste_first_frame"]["J-Mean"]
    assert 0 < paste < 1
    assert report["averages"]["flow_propagation"]["J-Mean"] > paste
    assert (out / "baselines" / "flow_propagation" / "alpha" / "00004.png").is_file()
    md = (out / "metrics.md").read_text()
    assert "| perfect | 3 | 1.000 |" in md and "## perfect: per video" in md
    assert "| alpha | 1.000 | 1.000 | 1.000 |" in md


def test_only_frames_1_to_n_minus_2_are_scored(davis: Path, tmp_path: Path) -> None:
    method = _copy_annotations(davis, tmp_path / "m")
    for seq in ("alpha", "beta"):
        (method / seq / "00000.png").unlink()  # never read
        write_ids(method / seq, np.zeros((1, H, W), np.uint8), start=T - 1)  # last: all wrong
    argv = ["--benchmark", "davis2017", "--data", str(davis), "--baselines", "none"]
    report = _run([*argv, "--method", f"m={method}", "--out", str(tmp_path / "a")])
    assert report["averages"]["m"]["J&F-Mean"] == 1.0
    write_ids(method / "beta", np.zeros((1, H, W), np.uint8), start=2)  # a scored frame wrong
    report = _run([*argv, "--method", f"m={method}", "--out", str(tmp_path / "b")])
    # beta's one object: frames 1..3 score J = 1, 0, 1.
    assert report["per_video"]["m"]["beta"]["J"] == pytest.approx(2 / 3)


def test_the_mean_is_over_objects_not_videos(davis: Path, tmp_path: Path) -> None:
    method = _copy_annotations(davis, tmp_path / "m")
    ids = id_maps(2)
    ids[ids == 2] = 0  # alpha's object 2 never found; alpha_1 and beta_1 perfect
    shutil.rmtree(method / "alpha")
    write_ids(method / "alpha", ids)
    argv = ["--benchmark", "davis2017", "--data", str(davis), "--baselines", "none"]
    report = _run([*argv, "--method", f"m={method}", "--out", str(tmp_path / "o")])
    assert report["per_video"]["m"]["alpha"]["J"] == pytest.approx(0.5)
    assert report["per_video"]["m"]["beta"]["J"] == 1.0
    mean = report["averages"]["m"]
    # Objects 1, 0, 1 -> 2/3 (the mean over the videos would say (0.5 + 1) / 2 = 0.75).
    assert mean["J-Mean"] == pytest.approx(2 / 3) and mean["F-Mean"] == pytest.approx(2 / 3)
    assert mean["J&F-Mean"] == pytest.approx((mean["J-Mean"] + mean["F-Mean"]) / 2)


def test_another_split_is_read_from_its_list(tmp_path: Path) -> None:
    write_davis(tmp_path / "D", {"gamma": 1}, split="train")
    perfect = _copy_annotations(tmp_path / "D", tmp_path / "p")
    argv = ["--benchmark", "davis2017", "--data", str(tmp_path / "D"), "--split", "train"]
    report = _run([*argv, "--method", f"p={perfect}", "--out", str(tmp_path / "o")])
    assert list(report["per_video"]["p"]) == ["gamma"] and report["split"] == "train"


def _break_missing_annotations(davis: Path, method: Path) -> str:
    shutil.rmtree(davis / "Annotations")
    return "Annotations"


def _break_sequence_without_frames(davis: Path, method: Path) -> str:
    (davis / "ImageSets" / "2017" / "val.txt").write_text("alpha\nbeta\nghost\n")
    return "ghost"


def _break_method_missing_sequence(davis: Path, method: Path) -> str:
    shutil.rmtree(method / "beta")
    return str(method / "beta")


def _break_mask_size(davis: Path, method: Path) -> str:
    write_ids(method / "alpha", np.zeros((1, H, W - 1), np.uint8), start=2)
    return "00002.png"


def _break_unknown_id(davis: Path, method: Path) -> str:
    ids = np.zeros((1, H, W), np.uint8)
    ids[0, 0, 0] = 7  # beta has one object
    write_ids(method / "beta", ids, start=1)
    return "object id 7"


def _break_missing_split(davis: Path, method: Path) -> str:
    (davis / "ImageSets" / "2017" / "val.txt").unlink()
    return "val.txt"


@pytest.mark.parametrize(
    "breaker",
    [
        _break_missing_annotations,
        _break_sequence_without_frames,
        _break_method_missing_sequence,
        _break_mask_size,
        _break_unknown_id,
        _break_missing_split,
    ],
)
def test_bad_input_is_one_line_naming_the_file(
    davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], breaker
) -> None:
    method = _copy_annotations(davis, tmp_path / "m")
    expected = breaker(davis, method)
    argv = ["--benchmark", "davis2017", "--data", str(davis), "--baselines", "none"]
    err = one_line_error(capsys, main, [*argv, "--method", f"m={method}", "--out", str(tmp_path)])
    assert err.startswith("genprop-eval: error:") and expected in err, err


def test_tracking_colours_are_told_apart_and_read_back() -> None:
    colours = np.array(TRACK_COLOURS, np.int16)
    gaps = np.abs(colours[:, None] - colours[None]).max(-1)[~np.eye(len(colours), dtype=bool)]
    assert gaps.min() > 2 * TRACK_COLOR_TOLERANCE  # no pixel is near two colours
    ids = id_maps(2)
    ids[ids == 255] = 0
    video = np.full((T, H, W, 3), 90, np.uint8)
    painted = np.stack([colour_objects(f, i, 2) for f, i in zip(video, ids)])
    assert (painted[0][ids[0] == 1] == TRACK_COLOURS[0]).all()
    np.testing.assert_array_equal(labels_from_colours(painted, video, 2), ids)


def test_model_path_runs_genprop_tracking_and_scores_it(davis: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    argv = ["--benchmark", "davis2017", "--data", str(davis), "--model", str(tmp_path / "model")]
    report = _run([*argv, "--steps", "1", "--baselines", "none", "--out", str(out)])
    assert report["methods"] == ["genprop"]
    assert set(report["per_video"]["genprop"]) == {"alpha", "beta"}
    assert 0 <= report["averages"]["genprop"]["J&F-Mean"] <= 1
    written = sorted(p.name for p in (out / "genprop" / "alpha").glob("*.png"))
    assert written == [f"{t:05d}.png" for t in range(T)]
    first = id_maps(2)[0]
    with Image.open(out / "genprop" / "alpha" / "00000.png") as im:
        assert im.mode == "P"  # the DAVIS submission format, frame 0 the given annotation
        np.testing.assert_array_equal(np.asarray(im), np.where(first == 255, 0, first))


def test_real_davis_frames_and_masks(shared_data: Path, tmp_path: Path) -> None:
    """bmx-trees (DAVIS 2017 val, as ProPainter ships it: 432x240, one binary mask of bike and
    rider), its first 6 frames in the DAVIS layout."""
    src, root, seq = shared_data / "vos", tmp_path / "DAVIS", "bmx-trees"
    frames = sorted((src / "JPEGImages" / seq).glob("*.jpg"))[:6]
    (root / "JPEGImages" / "480p" / seq).mkdir(parents=True)
    for f in frames:
        shutil.copy(f, root / "JPEGImages" / "480p" / seq / f.name)
    masks = sorted((src / "Annotations" / seq).glob("*.png"))[:6]
    ids = np.stack([np.asarray(Image.open(m).convert("L")) >= 128 for m in masks])
    write_ids(root / "Annotations" / "480p" / seq, ids.astype(np.uint8))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{seq}\n")
    perfect = _copy_annotations(root, tmp_path / "perfect")
    argv = ["--benchmark", "davis2017", "--data", str(root), "--out", str(tmp_path / "o")]
    report = _run([*argv, "--method", f"perfect={perfect}"])
    assert report["averages"]["perfect"]["J&F-Mean"] == 1.0
    for baseline in ("flow_propagation", "paste_first_frame"):
        assert 0.3 < report["averages"][baseline]["J-Mean"] < 1.0  # the rider moves
