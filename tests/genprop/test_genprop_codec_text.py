"""Codec exact round trip, text encoder determinism, configs round trip, FLOP/param counts."""

from __future__ import annotations

import json

import pytest
import torch

from genprop import (
    GenPropConfig,
    GenPropModel,
    HashingTextEncoder,
    SpaceToDepthCodec,
    count_parameters,
    estimate_flops,
    model_report,
    preset,
)


def test_space_to_depth_exact_roundtrip():
    codec = SpaceToDepthCodec(4)
    video = torch.rand(2, 3, 3, 16, 24) * 2 - 1
    lat = codec.encode(video)
    assert lat.shape == (2, 3, 48, 4, 6)
    assert torch.equal(codec.decode(lat), video)
    with pytest.raises(ValueError, match="multiples of 4"):
        codec.encode(torch.zeros(1, 1, 3, 10, 16))


def test_space_to_depth_normalisation_gives_unit_scale_and_inverts():
    codec = SpaceToDepthCodec(2, shift=-0.2, scale=0.3)
    video = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.3 - 0.2
    lat = codec.encode(video)
    assert abs(lat.mean().item()) < 0.05 and abs(lat.std().item() - 1.0) < 0.05
    assert torch.allclose(codec.decode(lat), video, atol=1e-6)
    exact = SpaceToDepthCodec(2, scale=0.5)  # a power-of-two scale stays bit-exact
    assert torch.equal(exact.decode(exact.encode(video)), video)
    with pytest.raises(ValueError, match="scale"):
        SpaceToDepthCodec(2, scale=0.0)


def test_hashing_text_encoder_is_deterministic_and_handles_empty():
    a = HashingTextEncoder(dim=8, max_tokens=4, buckets=64, seed=0)
    b = HashingTextEncoder(dim=8, max_tokens=4, buckets=64, seed=0)
    ea, ma = a(["Track colored regions", ""])
    eb, _ = b(["track COLORED regions", ""])
    assert torch.equal(ea, eb)
    assert ma.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert torch.equal(ea[1], torch.zeros(4, 8))


@pytest.mark.parametrize("name", ["cpu_test", "demo", "small", "base", "large"])
def test_config_json_roundtrip(name):
    cfg = preset(name)
    again = GenPropConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_config_errors():
    with pytest.raises(ValueError, match=r"backbone\.kind"):
        GenPropConfig.from_dict({"backbone": {"kind": "unet"}})
    with pytest.raises(ValueError, match="unexpected"):
        GenPropConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="preset"):
        preset("huge")


@pytest.mark.parametrize("name", ["cpu_test", "demo", "demo_latent"])
@pytest.mark.parametrize("gate", [False, True])
def test_parameter_counts_match_modules(name, gate):
    cfg = preset(name)
    cfg.content_gate = gate
    with torch.device("meta"):
        model = GenPropModel(cfg, load_weights=False)
    counts = count_parameters(cfg)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert counts["backbone"] == n(model.backbone)
    assert counts["sce"] == n(model.content_encoder)
    assert counts["mpd"] == n(model.mask_decoder)
    assert counts["content_gate"] == (n(model.content_gate) if gate else 0)
    assert counts["codec"] == (n(model.codec) if name == "demo_latent" else 0)
    assert counts["total"] == n(model)


def test_flops_scale_with_size():
    rows = {r["preset"]: r for r in model_report()}
    assert rows["demo"]["tokens"] == rows["demo_latent"]["tokens"] == 8 * 8 * 8
    # The same DiT on 16 latent channels (2x2 patches) instead of 48 pixel values (8x8 / 4x4):
    # only the patch embedding and the head differ.
    assert rows["demo_latent"]["genprop_forward"] < rows["demo"]["genprop_forward"]
    order = ["cpu_test", "demo", "small", "base", "large"]
    flops = [rows[k]["genprop_forward"] for k in order]
    assert flops == sorted(flops)
    est = estimate_flops(preset("demo"))
    assert est["backbone_forward"] < est["genprop_forward"] < 2 * est["backbone_forward"]
