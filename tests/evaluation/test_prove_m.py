"""PROVE-M board: the reader, PSNR/SSIM/LPIPS, RC-S/RC-T and the report, on tiny made-up data with
random-weight DINOv2 and LPIPS folders built here (no download)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.boards import prove_m
from evaluation.boards.common import BoardError
from evaluation.dino import PAD_COLOR, PATCH, DinoFeatures, DinoUnavailableError
from evaluation.lpips import NETS, LpipsUnavailableError, load_lpips, lpips_video
from evaluation.removal_coherence import bounding_square, rbf_mmd, rc_s, rc_s_frame, rc_t
from genprop.inference.video_io import write_frames_dir, write_video

T, H, W = 3, 32, 32


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised DINOv2 (1 layer, 16 channels) with an ImageNet image processor."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("dinov2")
    torch.manual_seed(0)
    cfg = Dinov2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        patch_size=PATCH, image_size=28,
    )  # fmt: skip
    Dinov2Model(cfg).save_pretrained(folder)
    BitImageProcessor(
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    ).save_pretrained(folder)
    return folder


def _lpips_state(net: str, seed: int = 0) -> tuple[dict, dict]:
    """Random torchvision-style backbone and LPIPS-style linear state dicts for ``net``."""
    from evaluation.lpips import Lpips

    torch.manual_seed(seed)
    model = Lpips(net)
    backbone = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
    lin = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1)
        for i, c in enumerate(NETS[net]["channels"])
    }
    return backbone, lin


@pytest.fixture(scope="module")
def tiny_lpips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LPIPS folder (AlexNet layout, random weights) as the docs say to make one."""
    folder = tmp_path_factory.mktemp("lpips")
    backbone, lin = _lpips_state("alex")
    torch.save(backbone, folder / "backbone.pth")
    torch.save(lin, folder / "lin.pth")
    return folder


def _scene(rng: np.random.Generator) -> np.ndarray:
    """A smooth background with noise, ``(T, H, W, 3)`` uint8, drifting one pixel per frame."""
    y, x = np.mgrid[0:H, 0 : W + T]
    base = np.stack([x * 5 + 40, y * 4 + 60, (x + y) * 2 + 80], -1).astype(np.float64)
    base += rng.normal(0, 6, base.shape)
    return np.stack([base[:, t : t + W] for t in range(T)]).clip(0, 255).astype(np.uint8)


def _masks() -> np.ndarray:
    """``(T, H, W, 3)`` uint8 mask frames: a 10x10 white square moving right."""
    m = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        m[t, 11:21, 8 + 2 * t : 18 + 2 * t] = 255
    return m


def write_prove(root: Path, ids: tuple[str, ...] = ("a", "b")) -> dict[str, dict[str, np.ndarray]]:
    """A PROVE-M folder (frame folders for ``a``, lossless mp4s for the others); returns arrays."""
    rng = np.random.default_rng(1)
    data = {}
    for vid in ids:
        gt = _scene(rng)
        masks = _masks()
        inp = gt.copy()
        inp[masks[..., 0] > 0] = (250, 20, 20)  # the red object to remove
        data[vid] = {"inputs": inp, "masks": masks, "gt": gt}
        for role, video in data[vid].items():
            if vid == "a":
                write_frames_dir(root / role / vid, video)
            else:
                write_video(root / role / f"{vid}.mp4", video, 24, codec="lossless")
    return data


def _args(tmp_path: Path, data: Path, **kw) -> argparse.Namespace:
    base = {
        "data": data, "methods": [], "model": None, "genprop": None, "out": tmp_path / "out",
        "baselines": "all", "lpips": None, "dinov2": None, "clip": None, "device": "cpu",
    }  # fmt: skip
    return argparse.Namespace(**(base | kw))


def test_psnr_of_a_known_offset_and_ssim_of_identical(tmp_path: Path) -> None:
    data = write_prove(tmp_path / "d", ids=("a",))["a"]
    video = prove_m.ProveVideo("a", data["inputs"], data["masks"], data["gt"])
    gt = np.full((T, H, W, 3), 100, np.uint8)
    video.gt = gt
    offset = prove_m.score_video(gt + 10, video)  # every pixel off by 10: MSE = 100
    assert offset["PSNR"] == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)
    same = prove_m.score_video(gt.copy(), video)
    assert same["SSIM"] == pytest.approx(1.0)
    assert all(math.isnan(same[k]) for k in ("LPIPS", "RC-S", "RC-T"))  # no models given


def test_lpips_zero_for_identical_grows_with_noise_and_checks_its_folder(
    tiny_lpips: Path, tmp_path: Path
) -> None:
    model = load_lpips(tiny_lpips)
    assert model.net == "alex"
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    assert lpips_video(model, a, a) == pytest.approx(0.0, abs=1e-7)
    small = np.clip(a + rng.normal(0, 5, a.shape), 0, 255).astype(np.uint8)
    large = np.clip(a + rng.normal(0, 60, a.shape), 0, 255).astype(np.uint8)
    assert 0 < lpips_video(model, small, a) < lpips_video(model, large, a)
    assert lpips_video(model, small, a) == pytest.approx(lpips_video(model, a, small), rel=1e-5)
    with pytest.raises(LpipsUnavailableError, match=r"lin\.pth"):
        load_lpips(tmp_path)
    backbone, lin = _lpips_state("vgg")
    (tmp_path / "vgg").mkdir()
    torch.save(lin, tmp_path / "vgg" / "lin.pth")
    torch.save(_lpips_state("alex")[0], tmp_path / "vgg" / "backbone.pth")
    with pytest.raises(LpipsUnavailableError, match="do not fit LPIPS-vgg"):
        load_lpips(tmp_path / "vgg")
    torch.save(backbone, tmp_path / "vgg" / "backbone.pth")
    assert load_lpips(tmp_path / "vgg").net == "vgg"


def test_rbf_mmd_of_two_orthogonal_points() -> None:
    x, y = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.5]])  # normalised: e1, e2
    # K_xx = K_yy = 1, K_xy = exp(-|e1 - e2|^2 / (2 * 10^2)) = exp(-0.01)
    assert rbf_mmd(x, y) == pytest.approx(1000 * (2 - 2 * math.exp(-0.01)), rel=1e-6)
    assert rbf_mmd(x, x) == pytest.approx(0.0, abs=1e-9)


def test_bounding_square_grows_by_a_third_within_the_image() -> None:
    m = np.zeros((100, 100), bool)
    m[40:60, 45:55] = True  # 10 wide, 20 high: the square of side 20 centred on it
    assert bounding_square(m) == (33, 33, 67, 67)  # grown by round(20 / 3) = 7 each side
    m[:] = False
    m[0:10, 0:10] = True  # at the corner: no room to grow
    assert bounding_square(m) == (0, 0, 10, 10)
    assert bounding_square(np.zeros((8, 8), bool)) is None


def _colour_features(padded: np.ndarray) -> torch.Tensor:
    """A stand-in extractor: each 14x14 patch's mean colour (a known feature space)."""
    t = torch.from_numpy(padded).permute(2, 0, 1).float()[None]
    return torch.nn.functional.avg_pool2d(t, PATCH)[0]


def test_rc_s_is_perfect_when_the_hole_matches_its_surroundings() -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[8:24, 8:24] = 255
    flat = np.empty((H, W, 3), np.uint8)
    flat[:] = PAD_COLOR  # the padding colour, so padded patches look alike too
    assert rc_s_frame(flat, mask, _colour_features) == pytest.approx(1.0, abs=1e-6)
    stained = flat.copy()
    stained[8:24, 8:24] = (250, 10, 10)  # a visible leftover in the removed region
    assert rc_s_frame(stained, mask, _colour_features) < 0.5
    assert math.isnan(rc_s_frame(flat, np.zeros((H, W), np.uint8), _colour_features))


def test_rc_t_is_zero_for_a_static_result_with_dinov2(tiny_dino: Path) -> None:
    dino = DinoFeatures(tiny_dino)
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 256, (1, H, W, 3), dtype=np.uint8), T, axis=0)
    masks = _masks()
    assert rc_t(still, masks, dino) == pytest.approx(0.0, abs=1e-6)
    flicker = still.copy()
    flicker[1::2, 8:24, 8:26] = 255 - flicker[1::2, 8:24, 8:26]  # the fill changes every frame
    assert rc_t(flicker, masks, dino) > 0.01
    assert 0.0 < rc_s(still, masks, dino) <= 1.0


def test_missing_dinov2_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DinoUnavailableError, match=r"config\.json"):
        DinoFeatures(tmp_path)


def test_board_scores_methods_and_baselines_with_every_metric(
    tmp_path: Path, tiny_dino: Path, tiny_lpips: Path
) -> None:
    data = write_prove(tmp_path / "d", ids=("a", "b", "c"))
    (tmp_path / "d" / "gt" / "c.mp4").unlink()  # an incomplete video: skipped and counted
    perfect = tmp_path / "perfect"
    write_video(perfect / "a.mp4", data["a"]["gt"], 24, codec="lossless")
    write_frames_dir(perfect / "b", data["b"]["gt"])
    args = _args(
        tmp_path, tmp_path / "d", methods=[("perfect", perfect)], lpips=tiny_lpips,
        dinov2=tiny_dino,
    )  # fmt: skip
    paths = prove_m.run(args)
    report = json.loads(paths["json"].read_text())
    assert report["methods"] == ["identity", "mask_inpaint", "perfect"]
    per_video = report["per_video"]
    assert set(per_video["perfect"]) == {"a", "b"}
    for method in report["methods"]:
        for scores in per_video[method].values():
            assert all(scores[k] is not None for k in prove_m.COLUMNS), (method, scores)
    assert per_video["perfect"]["a"]["PSNR"] == 100.0  # exact match, capped
    assert per_video["perfect"]["a"]["LPIPS"] == pytest.approx(0.0, abs=1e-7)
    identity = per_video["identity"]["b"]
    assert identity["PSNR"] == pytest.approx(
        prove_m.psnr(data["b"]["inputs"], data["b"]["gt"]), abs=1e-9
    )
    inpainted = per_video["mask_inpaint"]["a"]
    assert inpainted["PSNR"] > identity["PSNR"]  # filling the hole beats leaving the object
    assert report["errors"] == [f"video c: skipped, no {tmp_path / 'd' / 'gt' / 'c.mp4'}"]
    assert (args.out / "baselines" / "mask_inpaint" / "a" / f"{T - 1:05d}.png").is_file()
    md = paths["md"].read_text()
    assert "| perfect | 2 |" in md and "RC-T" in md


def test_board_without_feature_models_still_reports_psnr_ssim(tmp_path: Path) -> None:
    write_prove(tmp_path / "d", ids=("a",))
    args = _args(tmp_path, tmp_path / "d", baselines="identity")
    report = json.loads(prove_m.run(args)["json"].read_text())
    scores = report["per_video"]["identity"]["a"]
    assert scores["PSNR"] is not None and scores["SSIM"] is not None
    assert scores["LPIPS"] is None and scores["RC-S"] is None and scores["RC-T"] is None
    assert "LPIPS unavailable: no --lpips folder given" in report["notes"]
    assert "RC-S/RC-T unavailable: no --dinov2 folder given" in report["notes"]


def test_bad_layout_and_bad_outputs(tmp_path: Path) -> None:
    write_prove(tmp_path / "d", ids=("a",))
    (tmp_path / "d" / "masks").rename(tmp_path / "d" / "segmentations")
    with pytest.raises(BoardError, match=r"no masks folder; expected one of masks/, mask/"):
        prove_m.run(_args(tmp_path, tmp_path / "d"))
    (tmp_path / "d" / "segmentations").rename(tmp_path / "d" / "masks")
    with pytest.raises(BoardError, match="cannot run on this benchmark"):
        prove_m.run(_args(tmp_path, tmp_path / "d", baselines="flow_propagation"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mp4").write_bytes(b"not a video")
    args = _args(tmp_path, tmp_path / "d", methods=[("broken", broken)], baselines="none")
    report = json.loads(prove_m.run(args)["json"].read_text())
    assert report["per_video"]["broken"] == {}
    assert len(report["errors"]) == 1 and "a.mp4: not a readable video" in report["errors"][0]


def test_cli_runs_the_board_and_reports_bad_data_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evaluation.cli import main

    write_prove(tmp_path / "d", ids=("a",))
    out = tmp_path / "out"
    argv = ["--benchmark", "prove-m", "--data", str(tmp_path / "d"), "--out", str(out)]
    assert main([*argv, "--baselines", "identity"]) == 0
    assert "| identity | 1 |" in (out / "metrics.md").read_text()
    capsys.readouterr()
    (tmp_path / "d" / "gt").rename(tmp_path / "d" / "clean")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    expected = f"{tmp_path / 'd'}: no gt folder; expected one of gt/, gts/, GT/, ground_truth/"
    assert err == f"genprop-eval: error: {expected}"
