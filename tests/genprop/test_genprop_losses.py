"""Region-aware loss: mask split, L_grad semantics, weights switch terms off, mask downsampling."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from genprop_helpers import make_batch, perturb

from genprop import GenPropModel, LossWeights, preset, training_losses
from genprop.flow import add_noise, sample_training_time
from genprop.modeling.latents import encode_batch
from genprop.region_aware_loss import feature_sensitivity, latent_mask, mpd_loss, region_split_mse


def test_mask_split_sums_to_plain_mse():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 2, 5, 3, 6, 6, generator=gen)
    m = torch.rand(2, 5, 6, 6, generator=gen)
    non_mask, in_mask = region_split_mse(pred, target, m)
    torch.testing.assert_close(non_mask + in_mask, F.mse_loss(pred[:, 1:], target[:, 1:]))
    assert non_mask > 0 and in_mask > 0


def test_training_loss_with_lambda_one_is_plain_mse(tiny_model):
    batch = make_batch(tiny_model.config)
    weights = LossWeights(mask=1.0, grad=0.0, mpd=0.0)
    losses = training_losses(
        tiny_model,
        batch,
        stage="genprop",
        weights=weights,
        generator=torch.Generator().manual_seed(0),
    )
    assert set(losses) == {"diffusion", "non_mask", "mask", "total"}  # weight 0: not computed
    torch.testing.assert_close(losses["total"], losses["diffusion"])
    torch.testing.assert_close(losses["non_mask"] + losses["mask"], losses["diffusion"])


def test_with_a_content_gate_the_paper_terms_stay_on_the_generator():
    cfg = preset("cpu_test")
    cfg.content_gate = True
    torch.manual_seed(0)
    model = GenPropModel.from_config(cfg)
    perturb(model, seed=3)  # an open gate: the output differs from the generator's prediction
    losses = training_losses(
        model,
        make_batch(cfg),
        stage="genprop",
        weights=LossWeights(mask=1.0, grad=0.0, mpd=0.0, gate=0.5),
        generator=torch.Generator().manual_seed(0),
    )
    assert set(losses) == {"diffusion", "non_mask", "mask", "gated", "gate", "total"}
    # The region-aware terms measure the generator's own velocity, not the gated output's.
    assert not torch.allclose(losses["non_mask"] + losses["mask"], losses["diffusion"])
    torch.testing.assert_close(losses["gated"], losses["diffusion"])
    expected = losses["non_mask"] + losses["mask"] + losses["gated"] + 0.5 * losses["gate"]
    torch.testing.assert_close(losses["total"], expected)


def _mask(shape=(1, 3, 4, 4)):
    m = torch.zeros(shape)
    m[..., 1:3, 1:3] = 1.0
    return m


def test_feature_sensitivity_zero_when_mask_is_ignored():
    m = _mask()
    content = torch.randn(1, 3, 2, 4, 4)
    proj = torch.randn(2, 8)

    def reduced(features, reduce):
        return features if reduce is None else [reduce(k, f) for k, f in enumerate(features)]

    def ignores_mask(c, reduce=None):  # reads only pixels outside the mask
        tokens = (c * (1 - m[:, :, None])).permute(0, 1, 3, 4, 2).reshape(1, -1, 2)
        return reduced([tokens @ proj], reduce)

    def reads_all(c, reduce=None):
        return reduced([c.permute(0, 1, 3, 4, 2).reshape(1, -1, 2) @ proj], reduce)

    zero = feature_sensitivity(ignores_mask, content, m, delta=0.1, patch=(1, 1))
    pos = feature_sensitivity(reads_all, content, m, delta=0.1, patch=(1, 1))
    assert zero < 1e-5
    assert pos > 0.1


def test_grad_term_positive_for_trained_sce_and_backpropagates(tiny_model):
    perturb(tiny_model.content_encoder, seed=3)
    tiny_model.freeze_backbone()
    batch = make_batch(tiny_model.config)
    losses = training_losses(
        tiny_model, batch, stage="genprop", weights=LossWeights(mask=0.0, grad=1.0, mpd=0.0)
    )
    assert losses["grad"] > 0
    losses["grad"].backward()
    assert tiny_model.content_encoder.injections[0].net[2].weight.grad.abs().sum() > 0


def test_full_loss_terms_and_seeded_reproducibility(tiny_model):
    batch = make_batch(tiny_model.config)
    a = training_losses(
        tiny_model, batch, stage="genprop", generator=torch.Generator().manual_seed(1)
    )
    b = training_losses(
        tiny_model, batch, stage="genprop", generator=torch.Generator().manual_seed(1)
    )
    assert set(a) == {"diffusion", "non_mask", "mask", "grad", "mpd", "total"}
    w = LossWeights()
    expected = a["non_mask"] + w.mask * a["mask"] + w.grad * a["grad"] + w.mpd * a["mpd"]
    torch.testing.assert_close(a["total"], expected)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_i2v_stage_trains_backbone_only(tiny_model):
    losses = training_losses(tiny_model, make_batch(tiny_model.config), stage="i2v")
    assert set(losses) == {"diffusion", "total"}
    losses["total"].backward()
    assert all(p.grad is None for p in tiny_model.content_encoder.parameters())
    assert tiny_model.backbone.final_proj.weight.grad.abs().sum() > 0


def test_bad_batch_and_stage_errors(tiny_model):
    batch = make_batch(tiny_model.config)
    with pytest.raises(ValueError, match="stage"):
        training_losses(tiny_model, batch, stage="bogus")
    as_dict = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    with pytest.raises(TypeError, match="expected a VideoBatch or EncodedBatch, got dict"):
        training_losses(tiny_model, as_dict, stage="genprop")
    batch.sce = None
    with pytest.raises(ValueError, match=r"batch\.sce: missing"):
        training_losses(tiny_model, batch, stage="genprop")
    assert set(training_losses(tiny_model, batch, stage="i2v")) == {"diffusion", "total"}


def test_sce_features_are_the_forward_injections(tiny_model):
    """The model method L_grad differentiates gives exactly the SCE features of the forward."""
    perturb(tiny_model.content_encoder, seed=3)
    enc = encode_batch(tiny_model, make_batch(tiny_model.config))
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(2, generator=gen)
    x_t = torch.randn(enc.target.shape, generator=gen)
    out = tiny_model(x_t, t, enc.first_latent, content=enc.content, task=enc.task)
    again = tiny_model.sce_features(
        enc.content, enc.first_latent, t, tokens=out.tokens, cond=out.cond
    )
    assert len(again) == len(out.injections) > 0
    for a, b in zip(again, out.injections, strict=True):
        assert torch.equal(a, b)


def test_grad_term_equals_a_direct_computation_on_the_sce(tiny_model):
    """L_grad through the model's public method is the finite difference of the SCE itself."""
    perturb(tiny_model.content_encoder, seed=3)
    batch, seed = make_batch(tiny_model.config), 7
    weights = LossWeights(mask=0.0, grad=1.0, mpd=0.0)
    losses = training_losses(
        tiny_model,
        batch,
        stage="genprop",
        weights=weights,
        cfg_dropout=0.0,
        generator=torch.Generator().manual_seed(seed),
    )
    # The same draws as the loss, in its order: text dropout, time, noise, task dropout.
    gen = torch.Generator().manual_seed(seed)
    torch.rand(2, generator=gen)
    enc = encode_batch(tiny_model, batch)
    t = sample_training_time(2, shift=tiny_model.config.timestep_shift, generator=gen)
    noise = torch.randn(enc.target.shape, generator=gen)
    torch.rand(2, generator=gen)
    out = tiny_model(
        add_noise(enc.target, noise, t),
        t,
        enc.first_latent,
        content=enc.content,
        task=enc.task,
        context=enc.context,
        context_mask=enc.context_mask,
        predict_mask=False,
    )
    bb, sce = tiny_model.backbone, tiny_model.content_encoder

    def features(c: torch.Tensor, reduce=None) -> list[torch.Tensor]:
        return sce(bb, bb.i2v_input(c, enc.first_latent), out.tokens, out.cond, reduce=reduce)

    direct = feature_sensitivity(
        features, enc.content, enc.mask, delta=weights.grad_delta, patch=bb.patch_size[1:]
    )
    assert direct > 0
    assert torch.equal(losses["grad"], direct)


def test_latent_mask_gaussian_downsample():
    mask = torch.zeros(1, 9, 32, 32)
    mask[:, 1:, :24, :24] = 1.0  # not on frame 0
    m = latent_mask(mask, spatial_factor=8, temporal_factor=4)
    assert m.shape == (1, 3, 4, 4)
    assert m[0, 0].max() == 0
    assert m[0, 1, 1, 1] > 0.9 and m[0, 1, 3, 3] < 0.3 and 0.3 < m[0, 1, 2, 2] < 0.9
    assert torch.equal(latent_mask(mask, spatial_factor=1, temporal_factor=1), mask)


@pytest.mark.parametrize("form", ["mse", "bce_dice"])
def test_mpd_loss_is_lowest_for_the_true_mask(form: str) -> None:
    m = torch.zeros(2, 3, 8, 8)
    m[:, 1:, 2:5, 3:6] = 1.0
    right = torch.where(m > 0.5, 8.0, -8.0)
    nothing = torch.full_like(m, -8.0)
    everything = torch.full_like(m, 8.0)
    loss = {
        k: mpd_loss(v, m, form).item() for k, v in [("r", right), ("n", nothing), ("e", everything)]
    }
    assert loss["r"] < 0.01 < loss["n"] and loss["r"] < loss["e"]
    if form == "bce_dice":  # the Dice term: predicting nothing costs ~1, not the mask's ~14 %
        assert loss["n"] > 0.9


def test_unknown_mpd_form_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"loss_weights\.mpd_form"):
        LossWeights(mpd_form="focal")


def test_the_perturbed_pass_of_l_grad_runs_once_and_is_recomputed_once() -> None:
    """Under activation checkpointing each SCE block runs 4 times in a step (the forward's pass
    and L_grad's perturbed pass, each once forward and once recomputed in backward), with the
    same loss and gradients as without checkpointing."""
    cfg = preset("cpu_test")
    torch.manual_seed(0)
    plain = GenPropModel.from_config(cfg)
    perturb(plain.content_encoder, seed=3)
    plain.freeze_backbone()
    cfg.backbone.gradient_checkpointing = True
    checkpointed = GenPropModel.from_config(cfg)
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.freeze_backbone()
    batch = make_batch(cfg)
    weights = LossWeights(mask=0.0, grad=1.0, mpd=0.0)
    results = []
    for model in (plain, checkpointed):
        calls: list[int] = []
        block = model.content_encoder.blocks[0]
        hook = block.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        model.train()
        losses = training_losses(
            model,
            batch,
            stage="genprop",
            weights=weights,
            generator=torch.Generator().manual_seed(5),
        )
        losses["total"].backward()
        hook.remove()
        grads = [p.grad.clone() for p in model.content_encoder.parameters() if p.grad is not None]
        results.append((losses["grad"].detach(), grads, len(calls)))
    (g_plain, grads_plain, calls_plain), (g_ckpt, grads_ckpt, calls_ckpt) = results
    assert calls_plain == 2  # no checkpointing: the forward's pass and the perturbed pass
    assert calls_ckpt == 4
    torch.testing.assert_close(g_ckpt, g_plain)
    assert len(grads_ckpt) == len(grads_plain) > 0
    for a, b in zip(grads_ckpt, grads_plain, strict=True):
        torch.testing.assert_close(a, b)
