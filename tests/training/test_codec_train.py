"""Stage 0 (``python -m training.codec_train``) and the learned codec through ``genprop-cache`` and
training from its latents."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from shard_factory import write_shards

from genprop.modeling.learned_codec import CONFIG_NAME, WEIGHTS_NAME, LearnedVideoCodec, load_codec
from genprop.modeling.model import GenPropModel
from training.cache.key import LatentCacheError, check_latent_cache, encoder_key
from training.cache.runner import run_cache
from training.codec_train import REPORT_NAME, main, run
from training.latent_datamodule import use_latent_cache
from training.model_factory import build_config
from training.train import train

SIZE = 16


def write_world(root: Path, videos: int, frames: int = 3, seed: int = 0) -> Path:
    """A toy-world folder in ``genprop-toyworld write``'s layout: coloured boxes on a gradient."""
    rng = np.random.default_rng(seed)
    ids = [f"toy_{i:06d}" for i in range(videos)]
    yy = np.repeat(np.arange(SIZE)[:, None], SIZE, axis=1)
    for vid in ids:
        folder = root / "JPEGImages" / vid
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, 3)
        colour = rng.integers(0, 256, 3)
        for t in range(frames):
            img = (base[None, None] * (0.5 + 0.5 * yy[..., None] / SIZE)).astype(np.uint8)
            x0 = int(rng.integers(0, SIZE // 2))
            img[4:10, x0 : x0 + 6] = colour
            Image.fromarray(img).save(folder / f"{t:05d}.png")
    (root / "world.json").write_text(json.dumps({"video_ids": ids, "num_videos": videos}))
    return root


def _args(world: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data", str(world), "--out", str(out), "--steps", "60", "--width", "8", "--lr", "5e-3",
        "--latent-channels", "4", "--batch-size", "8", "--log-every", "20", *extra,
    ]  # fmt: skip


def test_tiny_run_writes_the_codec_and_improves_it(tmp_path: Path) -> None:
    world = write_world(tmp_path / "world", videos=5)
    report = run(_args(world, tmp_path / "codec"))
    assert sorted(p.name for p in (tmp_path / "codec").iterdir()) == sorted(
        [CONFIG_NAME, WEIGHTS_NAME, REPORT_NAME]
    )
    saved = json.loads((tmp_path / "codec" / REPORT_NAME).read_text())
    assert saved["heldout_psnr_db"] == report["heldout_psnr_db"]
    assert math.isfinite(report["heldout_psnr_db"])
    assert report["heldout_psnr_db"] > report["initial_heldout_psnr_db"] + 1.0
    assert report["steps"] == 60 and report["skipped_videos"] == 0
    # The last of the 5 videos is held out: 1 x 3 frames; 4 x 3 frames train.
    assert (report["train_frames"], report["heldout_frames"]) == (12, 3)
    assert [c["step"] for c in report["curve"]] == [20, 40, 60]
    codec = load_codec(tmp_path / "codec")
    assert (codec.latent_channels, codec.spatial_factor) == (4, 4)
    # The stored statistics normalise the training frames' latents.
    frames = torch.stack(
        [
            torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1)
            for p in sorted((world / "JPEGImages").glob("toy_00000[0-3]/*.png"))
        ]
    )
    z = codec.encode(frames.float()[:, None] / 127.5 - 1)  # (N, 1, C, h, w)
    per_channel = z.transpose(0, 2).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(4), atol=1e-3, rtol=0)


def test_heldout_world_and_a_broken_video_is_skipped_and_counted(tmp_path: Path) -> None:
    world = write_world(tmp_path / "world", videos=3)
    (world / "JPEGImages" / "toy_000001" / "00001.png").write_bytes(b"not a png")
    held = write_world(tmp_path / "held", videos=2, seed=7)
    report = run(_args(world, tmp_path / "codec", "--heldout", str(held), "--steps", "2"))
    assert report["skipped_videos"] == 1 and "toy_000001" in report["skipped"][0]
    assert (report["train_frames"], report["heldout_frames"]) == (6, 6)


def test_trains_from_pixel_shards(tmp_path: Path) -> None:
    write_shards(tmp_path / "px", shards=1, per_shard=3, frames=2, size=32)
    report = run(_args(tmp_path / "px", tmp_path / "codec", "--steps", "2"))
    assert report["frame_size"] == [32, 32] and report["heldout_frames"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps: expected an integer >= 1, got 0"),
        (["--latent-channels", "0"], "--latent-channels: expected an integer in [1, 1024]"),
        (["--minutes", "1", "--steps", "3"], "not allowed with argument"),
        (["--data", "MISSING"], "does not exist (expected a toy world folder"),
        (["--data", "EMPTY"], "neither a toy world folder"),
        (["--data", "ONEVIDEO"], "--data: one video only"),
    ],
)
def test_user_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    world = write_world(tmp_path / "world", videos=2)
    write_world(tmp_path / "one", videos=1)
    (tmp_path / "empty").mkdir()
    where = {"MISSING": "nowhere", "EMPTY": "empty", "ONEVIDEO": "one"}
    argv = [str(tmp_path / where[a]) if a in where else a for a in argv]
    with pytest.raises(SystemExit) as info:
        main(_args(world, tmp_path / "codec") + argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("codec_train: error: ") and err.count("\n") == 1, err
    assert message.lower() in err.lower()
    assert not (tmp_path / "codec").exists()


# ---------------------------------------------------------------------------- genprop-cache
@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    codec = LearnedVideoCodec(latent_channels=4, width=4, downsamples=2)
    codec.set_latent_stats(torch.full((4,), 0.1), torch.full((4,), 0.5))
    return codec.save(tmp_path_factory.mktemp("learned") / "codec")


def _net(codec: Path) -> dict:
    return {
        "preset_name": "cpu_test",
        "overrides": {"codec": {"kind": "learned", "path": str(codec)}},
    }


def test_cache_and_train_from_it_with_the_learned_codec(
    codec_dir: Path, tmp_path: Path, compose_cfg
) -> None:
    write_shards(tmp_path / "px", shards=1, per_shard=2, frames=4, size=32)
    cfg = {
        "data": {"shards": str(tmp_path / "px")},
        "model": {"net": _net(codec_dir)},
        "output_dir": str(tmp_path / "lat"),
        "dtype": "fp32",
        "batch_size": 2,
        "progress": False,
        "ray": {"enabled": False},
    }
    manifest = run_cache(cfg)
    assert manifest["samples"] == 2 and manifest["errors"] == 0
    model_cfg = build_config(**_net(codec_dir), latents=str(tmp_path / "lat"))
    assert model_cfg.codec.kind == "learned"

    run_dir = tmp_path / "run"
    overrides = [
        "model.net.preset_name=cpu_test",
        "model.stage=genprop",
        f"+model.net.overrides.codec={{kind: learned, path: '{codec_dir}'}}",
        f"data.latents={tmp_path / 'lat'}",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.epoch_batches=2",
        f"paths.root_dir={run_dir}",
        f"paths.run_dir={run_dir}",
        "trainer=cpu",
        "trainer.max_steps=2",
        "callbacks.progress=null",
        "model.preview=false",
    ]
    train(use_latent_cache(compose_cfg(overrides)))
    export = run_dir / "export" / "last"
    model = GenPropModel.from_pretrained(export)
    assert model.codec.latent_channels == 4
    assert torch.equal(model.codec.latents_std, torch.full((4,), 0.5))


def test_a_retrained_codec_invalidates_the_cache_key(codec_dir: Path, tmp_path: Path) -> None:
    before = encoder_key(build_config(**_net(codec_dir)))
    other = load_codec(codec_dir)
    other.set_latent_stats(torch.zeros(4), torch.ones(4))
    moved = other.save(tmp_path / "moved")
    assert encoder_key(build_config(**_net(moved))) != before
    # The same files in another folder keep the key.
    same = tmp_path / "same"
    same.mkdir()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        (same / name).write_bytes((codec_dir / name).read_bytes())
    assert encoder_key(build_config(**_net(same))) == before
    with pytest.raises(LatentCacheError):
        check_latent_cache(tmp_path / "no-cache", build_config(**_net(codec_dir)))


def test_a_diverging_run_stops_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = write_world(tmp_path / "world", videos=2)
    with pytest.raises(SystemExit) as info:
        main(_args(world, tmp_path / "codec", "--lr", "1e30", "--steps", "5"))
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 1 and err[-1].startswith("codec_train: error: step ")
    assert "lower --lr" in err[-1]
    assert not (tmp_path / "codec").exists()
