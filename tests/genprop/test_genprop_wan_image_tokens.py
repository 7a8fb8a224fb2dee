"""Wan2.1-I2V's CLIP image tokens (tiny random folder in the real layout): the same tokens and
transformer output as diffusers' pipeline, a GenProp training step and a sampling step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from genprop_helpers import make_batch, tiny_wan_model
from PIL import Image

from genprop import GenPropModel, training_losses
from genprop.backbones.wan.pretrained import wan_config
from genprop.flow import sampling_times

GEOMETRY = dict(num_frames=5, height=32, width=32, sce_blocks=2)


@pytest.fixture(scope="module")
def folder(tiny_wan_folder: Callable[[str], Path]) -> Path:
    return tiny_wan_folder("wan2.1-i2v")


@pytest.fixture(scope="module")
def model(folder: Path) -> GenPropModel:
    return tiny_wan_model(folder, GEOMETRY)


def test_config_reads_the_image_encoder_and_needs_512_text_tokens(folder: Path) -> None:
    cfg = wan_config(folder, **GEOMETRY)
    assert cfg.backbone.image_encoder_path == str(folder.resolve())
    assert cfg.text.max_tokens == 512 and cfg.backbone.boundary_ratio is None
    with pytest.raises(ValueError, match=r"text_max_tokens: 6, .* needs 512"):
        wan_config(folder, text_max_tokens=6, **GEOMETRY)


def test_image_tokens_match_the_diffusers_pipeline(folder: Path, model: GenPropModel) -> None:
    from diffusers import WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline.from_pretrained(folder, local_files_only=True)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    first = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 127.5 - 1
    ours = model.encode_image(first)
    ref = pipe.encode_image(Image.fromarray(pixels), device="cpu")
    assert ours.shape == (1, 17, 16)  # (32 / 8)² patches + CLS, penultimate layer, width 16
    torch.testing.assert_close(ours, ref.float())


def test_backbone_matches_diffusers_forward_with_image_tokens(folder: Path) -> None:
    from diffusers import WanTransformer3DModel

    from genprop.backbones.wan.backbone import WanBackbone

    transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    bb = WanBackbone(transformer, latent_channels=16, mask_channels=4)
    gen = torch.Generator().manual_seed(1)
    x, first = torch.randn(2, 2, 2, 16, 4, 4, generator=gen)
    ctx, img = torch.randn(2, 512, 16, generator=gen), torch.randn(2, 17, 16, generator=gen)
    t = torch.tensor([0.2, 0.7])
    with torch.no_grad():
        ours = bb(x, t, first, ctx, image=img)
        inp = rearrange(bb.i2v_input(x, first), "b t c h w -> b c t h w")
        ref = transformer(inp, t * 1000, ctx, encoder_hidden_states_image=img, return_dict=False)
    torch.testing.assert_close(ours, rearrange(ref[0], "b c t h w -> b t c h w"))
    with pytest.raises(ValueError, match=r"needs CLIP image tokens \(image_dim 16"):
        bb(x, t, first, ctx)
    with pytest.raises(ValueError, match=r"text tokens: 6, .* needs 512"):
        bb(x, t, first, ctx[:, :6], image=img)


def test_training_step_sce_reads_image_tokens(model: GenPropModel) -> None:
    batch = make_batch(model.config, batch=1)
    losses = training_losses(
        model, batch, stage="genprop", generator=torch.Generator().manual_seed(0)
    )
    losses["total"].backward()
    assert torch.isfinite(losses["total"])
    assert model.content_encoder.injections[0].net[2].weight.grad.abs().sum() > 0
    assert model.content_encoder.blocks[0].attn2.add_k_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    model.zero_grad(set_to_none=True)


def test_sampling_step_and_export_without_encoders(model: GenPropModel, tmp_path: Path) -> None:
    batch = make_batch(model.config, batch=1)
    with torch.no_grad():
        first = model.encode_first_frame(batch.first, model.config.num_frames)
        content = model.codec.encode(batch.sce)
        image = model.encode_image(batch.first)
        x = torch.randn(first.shape, generator=torch.Generator().manual_seed(0))
        t = sampling_times(1, shift=model.config.timestep_shift)
        out = model(x, t[:1], first, content=content, task=torch.tensor([2]), image_embeds=image)
        x = x + (t[1] - t[0]) * out.velocity
        video = model.codec.decode(x)
        with pytest.raises(ValueError, match="needs CLIP image tokens"):
            model(x, t[:1], first, content=content)
    assert video.shape == (1, 5, 3, 32, 32) and torch.isfinite(video).all()
    assert out.mask_logits.shape == (1, 2, 4, 4)
    model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert not any(k.startswith(("image_encoder.", "text_encoder.")) for k in saved)
