"""The tiny DiT's optional residual convolution after the linear head (``backbone.head_conv``)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from genprop import GenPropModel, preset
from genprop.backbones.base import unpatchify
from genprop.config_checks import check_config
from genprop.configs import GenPropConfig
from genprop.field_checks import ConfigError
from genprop.scale.flops import count_parameters, estimate_flops


def _config(head_conv: int) -> GenPropConfig:
    cfg = preset("cpu_test")
    cfg.backbone.head_conv = head_conv
    return cfg


def _tokens_and_cond(model: GenPropModel):
    bb = model.backbone
    grid = (2, 4, 4)  # 2 latent frames of 8x8 cells, 2x2 patches
    x = torch.randn(1, 2 * 4 * 4, bb.dim)
    cond = bb.condition(torch.tensor([0.5]), grid, None, None)
    return x, cond


def test_the_head_convolution_starts_as_the_identity_and_then_learns() -> None:
    torch.manual_seed(0)
    model = GenPropModel(_config(16))
    bb = model.backbone
    torch.nn.init.normal_(bb.final_proj.weight, std=0.1)
    torch.nn.init.normal_(bb.final_modulation.weight, std=0.1)
    x, cond = _tokens_and_cond(model)
    out = bb.final(x, cond)
    shift, scale = bb.final_modulation(torch.nn.functional.silu(cond.time))[:, None].chunk(2, -1)
    linear = unpatchify(bb.final_proj(bb.final_norm(x) * (1 + scale) + shift), cond.grid, (2, 2))
    assert out.shape == (1, 2, model.codec.latent_channels, 8, 8)
    assert torch.equal(out, linear)  # zero-initialised last convolution: exactly the linear head
    out.square().sum().backward()
    assert bb.head_conv[2].weight.grad.abs().sum() > 0  # it is trained from the first step
    # Once trained, it mixes neighbouring cells across token borders: a change to one token moves
    # the output of the cell next to it in the neighbouring token.
    torch.nn.init.normal_(bb.head_conv[2].weight, std=0.1)
    with torch.no_grad():
        base = bb.final(x, cond)
        moved = x.clone()
        moved[0, 0] += 1.0  # token (frame 0, row 0, col 0) covers cells [0:2, 0:2]
        after = bb.final(moved, cond)
    assert (after[0, 0, :, 0, 2] - base[0, 0, :, 0, 2]).abs().max() > 0  # cell of token (0, 1)
    assert torch.equal(after[0, 1], base[0, 1])  # no mixing across frames


def test_a_model_with_the_head_convolution_saves_loads_and_is_counted(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = _config(16)
    model = GenPropModel(cfg)
    torch.nn.init.normal_(model.backbone.head_conv[2].weight, std=0.1)
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["backbone"]["head_conv"] == 16
    again = GenPropModel.from_pretrained(tmp_path / "m")
    assert torch.equal(again.backbone.head_conv[2].weight, model.backbone.head_conv[2].weight)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count_parameters(cfg)["backbone"] == n(model.backbone)
    assert count_parameters(cfg)["total"] == n(model)
    # A config written before the field existed builds the plain head.
    del saved["backbone"]["head_conv"], saved["format"], saved["version"]
    assert GenPropConfig.from_dict(saved).backbone.head_conv == 0


def test_the_head_convolutions_flops_are_counted() -> None:
    torch.manual_seed(0)
    plain, conv = _config(0), _config(16)
    extra = estimate_flops(conv)["backbone_forward"] - estimate_flops(plain)["backbone_forward"]
    model = GenPropModel(conv)
    # cpu_test: 4 frames of 32x32 -> a per-frame codec of 4x4 cells -> 4 latent frames of 8x8
    latent = torch.randn(model.latent_frames, model.codec.latent_channels, 8, 8)
    assert model.latent_frames == conv.num_frames
    with FlopCounterMode(display=False) as counter:
        model.backbone.head_conv(latent)
    assert counter.get_total_flops() == extra


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_a_bad_head_conv_is_one_config_error(value) -> None:
    cfg = _config(0)
    cfg.backbone.head_conv = value
    with pytest.raises(ConfigError, match=r"backbone\.head_conv"):
        check_config(cfg)
