"""The learned video codec (``codec.kind: learned``): geometry, its folder (safetensors + JSON,
no pickle), the latent statistics, and a GenProp model that trains, samples, saves and loads with
it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from genprop_helpers import make_batch, perturb
from safetensors.torch import load_file, save_file

from genprop import GenPropModel, preset, propagate, sample_latents
from genprop.configs import GenPropConfig
from genprop.encoder_configs import CodecConfig
from genprop.losses import training_losses
from genprop.modeling.codec import build_codec
from genprop.modeling.latents import LatentEncoders, encode_batch
from genprop.modeling.learned_codec import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CodecFolderError,
    LearnedVideoCodec,
    load_codec,
)

ARCH = {"latent_channels": 4, "width": 4, "downsamples": 2}


def _codec(seed: int = 0, **arch: int) -> LearnedVideoCodec:
    torch.manual_seed(seed)
    codec = LearnedVideoCodec(**(ARCH | arch))
    codec.set_latent_stats(
        torch.linspace(-0.5, 0.5, codec.latent_channels), torch.full((codec.latent_channels,), 2.0)
    )
    return codec


@pytest.fixture
def codec_dir(tmp_path: Path) -> Path:
    return _codec().save(tmp_path / "codec")


def _config(folder: Path):
    cfg = preset("cpu_test")  # 4 frames of 32x32
    cfg.codec.kind = "learned"
    cfg.codec.path = str(folder)
    return cfg


@pytest.mark.parametrize("downsamples", [1, 2, 3])
def test_shapes_and_factors(downsamples: int) -> None:
    codec = _codec(latent_channels=6, downsamples=downsamples)
    f = 2**downsamples
    video = torch.rand(2, 3, 3, 16, 24) * 2 - 1
    z = codec.encode(video)
    assert (codec.spatial_factor, codec.temporal_factor) == (f, 1)
    assert z.shape == (2, 3, 6, 16 // f, 24 // f)
    out = codec.decode(z)
    assert out.shape == video.shape and out.min() >= -1 and out.max() <= 1
    assert codec.latent_frames(5) == 5
    with pytest.raises(ValueError, match="multiples of"):
        codec.encode(torch.zeros(1, 1, 3, 16, 16 + f // 2 if f > 1 else 17))


def test_frames_are_coded_independently() -> None:
    codec = _codec()
    video = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    alone = codec.encode(video[:, 1:2])
    assert torch.allclose(codec.encode(video)[:, 1:2], alone, atol=1e-6)


def test_normalisation_stats_are_applied() -> None:
    codec = _codec()
    video = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    raw = codec.encode_frames(video[0])  # (T, C, h, w), un-normalised
    mean = codec.latents_mean.view(1, -1, 1, 1)
    std = codec.latents_std.view(1, -1, 1, 1)
    assert torch.allclose(codec.encode(video)[0], (raw - mean) / std, atol=1e-6)
    # decode undoes it: decoding the normalised latents == decoding the raw ones.
    assert torch.allclose(
        codec.decode(codec.encode(video))[0], codec.decode_frames(raw).clamp(-1, 1), atol=1e-5
    )
    with pytest.raises(ValueError, match="std"):
        codec.set_latent_stats(torch.zeros(4), torch.tensor([1.0, 0.0, 1.0, 1.0]))


def test_save_load_round_trip_is_bit_exact(codec_dir: Path) -> None:
    saved = _codec()
    loaded = load_codec(codec_dir)
    for (k, a), (k2, b) in zip(
        saved.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b), k
    video = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    assert torch.equal(saved.encode(video), loaded.encode(video))
    # The statistics travel with the weights.
    assert torch.equal(loaded.latents_std, torch.full((4,), 2.0))
    meta = json.loads((codec_dir / CONFIG_NAME).read_text())
    assert meta["format"] == "genprop-codec" and meta["latent_channels"] == 4


def test_folder_holds_no_pickle(codec_dir: Path) -> None:
    assert sorted(p.name for p in codec_dir.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    # A safetensors file: an 8-byte little-endian header length, then a JSON header.
    raw = (codec_dir / WEIGHTS_NAME).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    assert "latents_mean" in header and "latents_std" in header
    assert b"\x80\x04" not in raw[:2]  # not a pickle stream


def test_build_codec_reads_the_folder_and_freezes_it(codec_dir: Path) -> None:
    cfg = _config(codec_dir).codec
    cfg.latent_channels, cfg.width = 99, 99  # the folder's codec.json is the reference
    codec = build_codec(cfg)
    assert isinstance(codec, LearnedVideoCodec)
    assert (cfg.latent_channels, cfg.width, cfg.downsamples) == (4, 4, 2)
    assert not any(p.requires_grad for p in codec.parameters())


def _expect(folder: Path, match: str) -> None:
    with pytest.raises(CodecFolderError, match=match) as info:
        load_codec(folder)
    assert "\n" not in str(info.value)


def test_bad_codec_folders_fail_with_one_line(codec_dir: Path, tmp_path: Path) -> None:
    _expect(tmp_path / "nowhere", "is not a folder")
    (codec_dir / WEIGHTS_NAME).rename(tmp_path / "w.safetensors")
    _expect(codec_dir, "codec.safetensors: missing")
    (tmp_path / "w.safetensors").rename(codec_dir / WEIGHTS_NAME)
    meta = json.loads((codec_dir / CONFIG_NAME).read_text())
    (codec_dir / CONFIG_NAME).write_text(json.dumps(meta | {"latent_channels": 8}))
    _expect(codec_dir, "does not match codec.json")
    (codec_dir / CONFIG_NAME).write_text(json.dumps(meta | {"downsamples": 9}))
    _expect(codec_dir, "'downsamples'.*\\[0, 4\\]")
    (codec_dir / CONFIG_NAME).write_text(json.dumps(meta | {"format": "other"}))
    _expect(codec_dir, "field 'format'")
    (codec_dir / CONFIG_NAME).write_text("{not json")
    _expect(codec_dir, "invalid JSON")
    (codec_dir / CONFIG_NAME).write_text(json.dumps(meta))
    state = load_file(str(codec_dir / WEIGHTS_NAME))
    state["latents_std"] = torch.full((4,), float("nan"))
    save_file(state, str(codec_dir / WEIGHTS_NAME))
    _expect(codec_dir, "'latents_std' holds NaN")
    (codec_dir / WEIGHTS_NAME).write_bytes(b"\0" * (8 << 20))
    _expect(codec_dir, "bytes, expected about")
    (codec_dir / WEIGHTS_NAME).write_bytes(b"garbage")
    _expect(codec_dir, "unreadable")
    with pytest.raises(CodecFolderError, match=r"codec\.path: a learned codec needs its folder"):
        build_codec(CodecConfig(kind="learned"))


def test_genprop_model_trains_samples_saves_and_loads(codec_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GenPropModel.from_config(_config(codec_dir))
    perturb(model.backbone, seed=1)
    model.reset_genprop_modules()
    perturb(model.content_encoder, seed=2, scale=0.02)
    assert model.codec.latent_channels == 4 and model.latent_frames == 4
    assert not any(p.requires_grad for p in model.codec.parameters())
    batch = make_batch(model.config)
    gen = torch.Generator().manual_seed(0)
    losses = training_losses(model, batch, stage="genprop", generator=gen)
    assert {"mask", "non_mask", "mpd"} <= set(losses) and torch.isfinite(losses["total"])
    losses["total"].backward()
    assert any(p.grad is not None for p in model.content_encoder.parameters())
    assert all(p.grad is None for p in model.codec.parameters())
    # The latent-grid mask of the region-aware loss: 32x32 pixels -> 8x8 cells.
    enc = encode_batch(model, batch)
    assert enc.mask is not None and enc.mask.shape == (2, 4, 8, 8)
    assert enc.target.shape == (2, 4, 4, 8, 8)

    first = model.encode_first_frame(batch.first, 4)
    lat, logits = sample_latents(
        model, first, content=enc.content, task=batch.task, steps=2, generator=torch.Generator()
    )
    assert lat.shape == enc.target.shape and logits is not None
    video = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    res = propagate(model, video, video[0], "removal", steps=2, seed=0)
    assert res.video.shape == video.shape and res.masks.shape == video.shape[:3]

    out = model.save_pretrained(tmp_path / "export")
    saved = json.loads((out / "config.json").read_text())
    assert saved["codec"]["path"] == "codec"  # the codec travels inside the model folder
    loaded = GenPropModel.from_pretrained(out)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.rand(1, 4, 3, 32, 32) * 2 - 1
    assert torch.equal(model.codec.encode(x), loaded.codec.encode(x))
    # Same encoders as the model: what genprop-cache runs gives the model's latents.
    encoders = LatentEncoders(_config(codec_dir))
    assert torch.equal(encode_batch(encoders, batch).target, enc.target)


def test_model_built_without_encoders_keeps_the_learned_codec(codec_dir: Path) -> None:
    # Training from a latent cache: the small learned codec is built (previews, exports).
    model = GenPropModel.from_config(_config(codec_dir), encoders=False)
    assert isinstance(model.codec, LearnedVideoCodec)
    assert torch.equal(model.codec.latents_std, torch.full((4,), 2.0))


def test_config_checks_name_a_bad_learned_codec_field() -> None:
    data = preset("cpu_test").to_dict()
    data["codec"] |= {"kind": "learned", "downsamples": 9}
    with pytest.raises(ValueError, match=r"codec\.downsamples"):
        GenPropConfig.from_dict(data)
    data["codec"] |= {"downsamples": 3, "latent_channels": 6}
    cfg = GenPropConfig.from_dict(data)  # 32x32 clips -> 4x4 cells of 6 channels
    assert (cfg.codec.latent_channels, cfg.codec.downsamples) == (6, 3)
