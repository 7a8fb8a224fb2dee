"""Wan2.2-TI2V's first frame by latent replacement with per-token timesteps (tiny random folder in
its real layout: 48-channel VAE with patch 2, ``expand_timesteps``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from einops import rearrange
from genprop_helpers import make_batch, tiny_wan_model

from genprop import GenPropModel, sample_latents, training_losses

GEOMETRY = dict(num_frames=9, height=32, width=32, text_max_tokens=6, sce_blocks=2)


@pytest.fixture(scope="module")
def folder(tiny_wan_folder: Callable[[str], Path]) -> Path:
    return tiny_wan_folder("wan2.2-ti2v")


@pytest.fixture(scope="module")
def model(folder: Path) -> GenPropModel:
    return tiny_wan_model(folder, GEOMETRY)


def test_config_and_codec(model: GenPropModel) -> None:
    cfg = model.config
    assert cfg.backbone.expand_timesteps and cfg.timestep_shift == 5.0  # TI2V's flow_shift
    assert (model.codec.latent_channels, model.codec.spatial_factor) == (48, 16)
    assert model.backbone.first_frame_by_replacement


def test_backbone_matches_diffusers_per_token_timesteps(folder: Path) -> None:
    from diffusers import WanTransformer3DModel

    from genprop.backbones.wan.backbone import WanBackbone

    transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    bb = WanBackbone(
        transformer, latent_channels=48, mask_channels=4, first_frame_by_replacement=True
    )
    gen = torch.Generator().manual_seed(1)
    x, first = torch.randn(2, 2, 3, 48, 4, 4, generator=gen)
    ctx, t = torch.randn(2, 5, 16, generator=gen), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        ours = bb(x, t, first, ctx)
        # The pipeline: latents with frame 0 replaced, timestep 0 on frame 0's tokens.
        inp = rearrange(bb.i2v_input(x, first), "b t c h w -> b c t h w")
        steps = torch.cat([torch.zeros(2, 4), t[:, None].expand(2, 8)], dim=1) * 1000
        ref = rearrange(
            transformer(inp, steps, ctx, return_dict=False)[0], "b c t h w -> b t c h w"
        )
    torch.testing.assert_close(ours[:, 1:], ref[:, 1:])
    pinned = (x[:, 0] - first[:, 0]) / t.view(-1, 1, 1, 1)
    torch.testing.assert_close(ours[:, 0], pinned)  # frame 0 moves straight to the given frame


def test_noise_on_the_given_frame_changes_nothing(model: GenPropModel) -> None:
    gen = torch.Generator().manual_seed(3)
    first = torch.randn(1, 3, 48, 2, 2, generator=gen)
    x, content = torch.randn(2, 1, 3, 48, 2, 2, generator=gen)
    other = x.clone()
    other[:, 0] += 1.0
    t, task = torch.tensor([0.6]), torch.tensor([1])
    with torch.no_grad():
        a = model(x, t, first, content=content, task=task)
        b = model(other, t, first, content=content, task=task)
    torch.testing.assert_close(a.velocity[:, 1:], b.velocity[:, 1:])
    assert a.cond.block_time.shape == (1, 3 * 1 * 1, 6, model.backbone.dim)  # per token


def test_training_step_and_sampling_keep_the_first_frame(model: GenPropModel) -> None:
    batch = make_batch(model.config, batch=1)
    losses = training_losses(
        model, batch, stage="genprop", generator=torch.Generator().manual_seed(0)
    )
    losses["total"].backward()
    assert torch.isfinite(losses["total"].detach())
    assert model.content_encoder.injections[0].net[2].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        first = model.encode_first_frame(batch.first, model.config.num_frames)
        content = model.codec.encode(batch.sce)
        latents, masks = sample_latents(
            model, first, content=content, task=torch.tensor([0]), steps=2
        )
    torch.testing.assert_close(latents[:, 0], first[:, 0], atol=1e-5, rtol=0)
    assert latents.shape == (1, 3, 48, 2, 2) and masks.shape == (1, 3, 2, 2)
