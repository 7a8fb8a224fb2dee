"""Wan2.2-I2V-A14B's two experts: routing at the boundary, the training expert choice, one SCE/MPD
per expert (gradients only in the chosen one), sampling through both (tiny random folder)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from genprop_helpers import make_batch, perturb

from genprop import GenPropModel, sample_latents, training_losses
from genprop.backbones.wan.pretrained import wan_config
from genprop.flow import sample_training_time, training_time_cdf
from genprop.modeling.experts import (
    HIGH_NOISE,
    LOW_NOISE,
    choose_training_expert,
    expert_index,
    expert_shares,
    expert_time_range,
)

GEOMETRY = dict(num_frames=5, height=32, width=32, text_max_tokens=6, sce_blocks=2)


@pytest.fixture(scope="module")
def model(tiny_wan_folder: Callable[[str], Path]) -> GenPropModel:
    folder = tiny_wan_folder("wan2.2-a14b")
    torch.manual_seed(0)
    net = GenPropModel.from_config(wan_config(folder, **GEOMETRY))
    net.freeze_backbone()
    for i, part in enumerate((net.content_encoder, net.expert_2.content_encoder)):
        perturb(part, seed=10 + i, scale=0.02)  # non-zero injections in both experts
    return net


def test_folder_gives_two_experts_and_wan_shift(model: GenPropModel) -> None:
    cfg = model.config
    assert (cfg.backbone.subfolder, cfg.backbone.subfolder_2) == ("transformer", "transformer_2")
    assert cfg.backbone.boundary_ratio == 0.9 and cfg.timestep_shift == 5.0
    a, b = model.backbone.blocks[0], model.expert_2.backbone.blocks[0]
    assert not torch.equal(a.ffn.net[2].weight, b.ffn.net[2].weight)  # two different experts
    # Each expert's SCE / MPD start as copies of its own expert's blocks.
    sce2 = model.expert_2.content_encoder.blocks[0].ffn.net[2].weight
    assert not torch.equal(sce2, model.content_encoder.blocks[0].ffn.net[2].weight)
    assert torch.equal(
        model.expert_2.mask_decoder.block.ffn.net[2].weight,
        model.expert_2.backbone.blocks[-1].ffn.net[2].weight,
    )


def test_routing_at_the_boundary(model: GenPropModel) -> None:
    t = torch.tensor([1.0, 0.9 + 1e-4, 0.9, 0.9 - 1e-4, 0.5, 0.0])
    assert expert_index(t, 0.9).tolist() == [0, 0, 0, 1, 1, 1]
    assert model.route(torch.tensor([0.9])).backbone is model.backbone
    assert model.route(torch.tensor([0.9 - 1e-4])).backbone is model.expert_2.backbone
    with pytest.raises(ValueError, match=r"spans the expert boundary 0\.9"):
        model.route(torch.tensor([0.95, 0.2]))


def test_expert_shares_match_sampled_times() -> None:
    high, low = expert_shares(0.9, 3.0)
    assert math.isclose(high + low, 1.0)
    assert 0.13 < high < 0.15  # shift 3: ~14 % of training times at t >= 0.9 (SD3 / Wan)
    t = sample_training_time(200_000, shift=3.0, generator=torch.Generator().manual_seed(0))
    assert abs(float((t >= 0.9).float().mean()) - high) < 0.005
    assert training_time_cdf(0.5, 1.0) == pytest.approx(0.5)
    assert expert_shares(0.9, 5.0)[0] > high  # a larger shift puts more times in high noise


def test_times_inside_an_expert_follow_the_same_distribution() -> None:
    gen = torch.Generator().manual_seed(1)
    lo_range, hi_range = expert_time_range(LOW_NOISE, 0.9), expert_time_range(HIGH_NOISE, 0.9)
    low = sample_training_time(50_000, shift=5.0, generator=gen, t_range=lo_range)
    high = sample_training_time(50_000, shift=5.0, generator=gen, t_range=hi_range)
    assert bool((expert_index(low, 0.9) == LOW_NOISE).all())
    assert bool((expert_index(high, 0.9) == HIGH_NOISE).all())
    # Conditional median of the low range = the unconditional quantile at half its mass.
    ref = sample_training_time(400_000, shift=5.0, generator=gen)
    share_low = expert_shares(0.9, 5.0)[1]
    assert float(low.median()) == pytest.approx(float(ref.quantile(share_low / 2)), abs=0.01)


def test_expert_choice_is_shared_by_seed_and_follows_the_shares() -> None:
    picks = [choose_training_expert(0.9, 5.0, seed=s, generator=None) for s in range(4000)]
    again = [choose_training_expert(0.9, 5.0, seed=s, generator=None) for s in range(4000)]
    assert picks == again  # every rank with the same step picks the same expert
    share_high = picks.count(HIGH_NOISE) / len(picks)
    assert share_high == pytest.approx(expert_shares(0.9, 5.0)[0], abs=0.03)


def _grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("expert", [HIGH_NOISE, LOW_NOISE])
def test_training_step_only_trains_the_chosen_expert(model: GenPropModel, expert: int) -> None:
    seed = next(
        s for s in range(100) if choose_training_expert(0.9, 5.0, seed=s, generator=None) == expert
    )
    batch = make_batch(model.config, batch=2)
    losses = training_losses(
        model, batch, stage="genprop", generator=torch.Generator().manual_seed(0), expert_seed=seed
    )
    losses["total"].backward()
    chosen = model.route(torch.tensor([0.95 if expert == HIGH_NOISE else 0.3]))
    other = model.route(torch.tensor([0.3 if expert == HIGH_NOISE else 0.95]))
    assert _grad_norm(chosen.content_encoder) > 0 and _grad_norm(chosen.mask_decoder) > 0
    assert _grad_norm(other.content_encoder) == 0 and _grad_norm(other.mask_decoder) == 0
    assert all(p.grad is None for p in model.backbone_parameters())
    model.zero_grad(set_to_none=True)


def test_sampling_runs_each_step_on_its_expert(model: GenPropModel) -> None:
    calls: list[str] = []
    hooks = [
        model.backbone.blocks[0].register_forward_hook(lambda *_: calls.append("high")),
        model.expert_2.backbone.blocks[0].register_forward_hook(lambda *_: calls.append("low")),
    ]
    try:
        batch = make_batch(model.config, batch=1)
        with torch.no_grad():
            first = model.encode_first_frame(batch.first, model.config.num_frames)
            content = model.codec.encode(batch.sce)
        latents, masks = sample_latents(
            model, first, content=content, task=torch.tensor([1]), steps=4
        )
    finally:
        for h in hooks:
            h.remove()
    # shift 5, 4 steps: t = 1, 0.94, 0.83, 0.63 -> two high-noise steps, then two low-noise ones.
    assert calls == ["high", "high", "low", "low"]
    assert torch.isfinite(latents).all() and masks.shape == (1, 2, 4, 4)


def test_trainable_parameters_cover_both_experts(model: GenPropModel) -> None:
    ids = {id(p) for p in model.trainable_parameters("genprop")}
    for part in (model.expert_2.content_encoder, model.expert_2.mask_decoder):
        assert all(id(p) in ids for p in part.parameters())
    assert not any(id(p) in ids for p in model.expert_2.backbone.parameters())


def test_save_load_keeps_both_experts(model: GenPropModel, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path / "m")
    root = Path(model.config.backbone.path)
    loaded = GenPropModel.from_pretrained(tmp_path / "m", allowed_roots=[root])
    w = "expert_2.content_encoder.blocks.0.ffn.net.2.weight"
    assert torch.equal(loaded.state_dict()[w], model.state_dict()[w])
    assert loaded.config.backbone.boundary_ratio == 0.9


def test_activation_checkpointing_covers_both_experts(model: GenPropModel) -> None:
    from genprop.scale.sharding import checkpoint_blocks

    before = (model.backbone.gradient_checkpointing, model.expert_2.backbone.gradient_checkpointing)
    try:
        checkpoint_blocks(model)
        low_noise = torch.tensor([0.1])  # routed to the second (low-noise) expert
        assert model.checkpoints_activations(torch.tensor([0.95]))
        assert model.checkpoints_activations(low_noise)
    finally:
        model.backbone.gradient_checkpointing, model.expert_2.backbone.gradient_checkpointing = (
            before
        )
