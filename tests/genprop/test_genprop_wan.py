"""Wan2.x I2V through diffusers: a tiny random config (no download) run through GenProp."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from einops import rearrange
from genprop_helpers import make_batch, perturb

from genprop import (
    CodecConfig,
    GenPropConfig,
    GenPropModel,
    TextConfig,
    WanConfig,
    propagate,
    training_losses,
)
from genprop.backbones.wan.pretrained import TINY_WAN_TRANSFORMER, TINY_WAN_VAE

# The tiny shapes users and tests share (as diffusers' own Wan tests: 2 heads x 12, 36 inputs).
TRANSFORMER = TINY_WAN_TRANSFORMER
VAE = TINY_WAN_VAE


def wan_config() -> GenPropConfig:
    return GenPropConfig(
        backbone=WanConfig(transformer_config=dict(TRANSFORMER)),
        codec=CodecConfig(kind="wan_vae", vae_config=dict(VAE)),
        text=TextConfig(dim=16, max_tokens=4, buckets=64),
        sce_blocks=2,
        num_frames=5,
        height=32,
        width=32,
    )


@pytest.fixture(scope="module")
def wan_model() -> GenPropModel:
    torch.manual_seed(0)
    return GenPropModel.from_config(wan_config())


def test_adapter_matches_diffusers_forward(wan_model):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(1)
    transformer = WanTransformer3DModel.from_config(TRANSFORMER)
    from genprop.backbones.wan.backbone import WanBackbone

    bb = WanBackbone(transformer, latent_channels=16, mask_channels=4)
    x, first = torch.randn(2, 2, 2, 16, 4, 4)
    ctx, t = torch.randn(2, 3, 16), torch.tensor([0.2, 0.7])
    with torch.no_grad():
        ours = bb(x, t, first, ctx)
        inp = rearrange(bb.i2v_input(x, first), "b t c h w -> b c t h w")
        ref = transformer(inp, t * 1000, ctx, return_dict=False)[0]
    torch.testing.assert_close(ours, rearrange(ref, "b c t h w -> b t c h w"))


def test_wan_init_equals_backbone_and_backward(wan_model):
    batch = make_batch(wan_model.config, batch=1)
    with torch.no_grad():
        first = wan_model.encode_first_frame(batch.first, 5)
        content = wan_model.codec.encode(batch.sce)
    assert first.shape == content.shape == (1, 2, 16, 4, 4)
    x_t, t = torch.randn_like(content), torch.tensor([0.5])
    with torch.no_grad():
        out = wan_model(x_t, t, first, content=content, task=torch.tensor([3]))
        ref = wan_model.backbone(x_t, t, first)
    assert torch.equal(out.velocity, ref)
    assert out.mask_logits.shape == (1, 2, 4, 4)

    wan_model.freeze_backbone()
    losses = training_losses(wan_model, batch, stage="genprop")
    losses["total"].backward()
    assert all(p.grad is None for p in wan_model.backbone.parameters())
    assert wan_model.content_encoder.injections[1].net[2].weight.grad.abs().sum() > 0
    assert wan_model.mask_decoder.head[2].weight.grad.abs().sum() > 0
    wan_model.zero_grad(set_to_none=True)


def test_wan_sampling_step_and_save_load(wan_model, tmp_path):
    wan_model = copy.deepcopy(wan_model)
    perturb(wan_model.content_encoder, seed=2, scale=0.02)
    video = np.random.default_rng(0).integers(0, 256, (6, 20, 24, 3), dtype=np.uint8)
    res = propagate(wan_model, video, video[0], "tracking", prompt="track colored regions", steps=1)
    assert res.video.shape == video.shape and res.masks.shape == video.shape[:3]
    assert np.isfinite(res.masks).all()

    wan_model.save_pretrained(tmp_path / "wan")
    loaded = GenPropModel.from_pretrained(tmp_path / "wan")
    again = propagate(loaded, video, video[0], "tracking", prompt="track colored regions", steps=1)
    assert np.array_equal(res.video, again.video)
