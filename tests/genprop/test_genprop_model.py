"""GenPropModel: zero-init equivalence, injection weight, gradient routing, save/load."""

from __future__ import annotations

import pytest
import torch
from genprop_helpers import perturb, step_inputs

from genprop import GenPropModel, preset


def _backbone(model, s):
    return model.backbone(s["x_t"], s["t"], s["first_latent"], s["context"], s["context_mask"])


def test_init_equals_backbone_exactly(tiny_model):
    s = step_inputs(tiny_model)
    task = torch.tensor([0, 3])
    with torch.no_grad():
        out = tiny_model(
            s["x_t"],
            s["t"],
            s["first_latent"],
            content=s["content"],
            task=task,
            context=s["context"],
            context_mask=s["context_mask"],
        )
        ref = _backbone(tiny_model, s)
    assert ref.abs().max() > 0  # the backbone is not trivially zero
    assert torch.equal(out.velocity, ref)
    assert out.mask_logits.shape == (2, 4, 8, 8)
    # Once the injections are trained (perturbed), the output does change.
    perturb(tiny_model.content_encoder, seed=2)
    with torch.no_grad():
        changed = tiny_model(s["x_t"], s["t"], s["first_latent"], content=s["content"])
    assert not torch.allclose(changed.velocity, ref)


def test_injection_weight_zero_equals_backbone(tiny_model):
    perturb(tiny_model.content_encoder, seed=3)
    s = step_inputs(tiny_model, seed=4)
    with torch.no_grad():
        ref = _backbone(tiny_model, s)
        kw = dict(content=s["content"], context=s["context"], context_mask=s["context_mask"])
        off = tiny_model(s["x_t"], s["t"], s["first_latent"], injection_weight=0.0, **kw)
        on = tiny_model(s["x_t"], s["t"], s["first_latent"], injection_weight=1.0, **kw)
    assert torch.equal(off.velocity, ref)
    assert not torch.allclose(on.velocity, ref)


def test_frozen_backbone_routes_gradients_to_genprop_parts(tiny_model):
    perturb(tiny_model, seed=5)
    tiny_model.freeze_backbone()
    s = step_inputs(tiny_model)
    out = tiny_model(
        s["x_t"],
        s["t"],
        s["first_latent"],
        content=s["content"],
        task=torch.tensor([1, 2]),
        context=s["context"],
        context_mask=s["context_mask"],
    )
    (out.velocity.square().mean() + out.mask_logits.square().mean()).backward()
    trainable = {id(p) for p in tiny_model.trainable_parameters("genprop")}
    for name, p in tiny_model.named_parameters():
        if name.startswith("backbone."):
            assert p.grad is None, name
        else:
            assert id(p) in trainable, name
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_trainable_parameters_by_stage(tiny_model):
    i2v = {id(p) for p in tiny_model.trainable_parameters("i2v")}
    assert i2v == {id(p) for p in tiny_model.backbone.parameters()}
    both = tiny_model.trainable_parameters("genprop", train_backbone=True)
    assert len(both) == len(list(tiny_model.parameters()))
    with pytest.raises(ValueError, match="stage"):
        tiny_model.trainable_parameters("pretrain")


def test_save_load_roundtrip_identical(tiny_model, tmp_path):
    perturb(tiny_model, seed=6)
    tiny_model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "config.json").is_file()
    loaded = GenPropModel.from_pretrained(tmp_path / "m")
    s = step_inputs(tiny_model)
    with torch.no_grad():
        kw = dict(content=s["content"], task=torch.tensor([0, 4]), context=s["context"])
        a = tiny_model(s["x_t"], s["t"], s["first_latent"], **kw)
        b = loaded(s["x_t"], s["t"], s["first_latent"], **kw)
    assert torch.equal(a.velocity, b.velocity)
    assert torch.equal(a.mask_logits, b.mask_logits)


def test_load_backbone_from_stage1_export(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "stage1")
    fresh = GenPropModel.from_config(preset("cpu_test"))
    fresh.load_backbone_from(tmp_path / "stage1")
    for a, b in zip(fresh.backbone.parameters(), tiny_model.backbone.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(
        fresh.content_encoder.blocks[0].parameters(),
        tiny_model.backbone.blocks[0].parameters(),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert torch.equal(
        fresh.mask_decoder.block.qkv.weight, tiny_model.backbone.blocks[-1].qkv.weight
    )
    assert fresh.content_encoder.injections[0].net[2].weight.abs().sum() == 0


def test_from_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        GenPropModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "other"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="format"):
        GenPropModel.from_pretrained(tmp_path)


def test_gradient_checkpointing_matches(tiny_model):
    perturb(tiny_model, seed=7)
    s = step_inputs(tiny_model)
    grads = []
    for ckpt in (False, True):
        tiny_model.zero_grad()
        tiny_model.backbone.gradient_checkpointing = ckpt
        out = tiny_model(s["x_t"], s["t"], s["first_latent"], content=s["content"])
        out.velocity.square().mean().backward()
        grads.append(tiny_model.content_encoder.injections[0].net[2].weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("broadcast", [True, False])
def test_dit_first_frame_condition_layout(broadcast):
    cfg = preset("cpu_test")
    cfg.backbone.first_frame_broadcast = broadcast
    model = GenPropModel.from_config(cfg)
    first = torch.rand(1, 3, 32, 32) * 2 - 1
    first_latent = model.encode_first_frame(first, 4)
    x_t = torch.randn_like(first_latent)
    inp = model.backbone.i2v_input(x_t, first_latent)
    c = first_latent.shape[2]
    given = inp[:, :, -c:]
    mask = inp[:, :, c:-c]
    assert torch.equal(inp[:, :, :c], x_t)
    assert mask[:, 0].eq(1).all() and mask[:, 1:].eq(0).all()  # frame 0 is the given one
    for t in range(4):
        expected = first_latent[:, 0] if (broadcast or t == 0) else first_latent[:, t]
        assert torch.equal(given[:, t], expected)


def test_x0_head_gives_the_exact_velocity_for_the_exact_clean_latents():
    # The DiT head predicts x0; (x_t - x0) / t must be the flow target eps - x0 (for t >= t_min)
    # so that the loss and the sampler, which work on velocities, are unchanged.
    from genprop.flow import add_noise, velocity_target

    model = GenPropModel.from_config(preset("cpu_test"))
    assert model.backbone.cfg.prediction == "x0"
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 48, 8, 8, generator=g), torch.randn(2, 4, 48, 8, 8, generator=g)
    t = torch.tensor([0.3, 0.9])
    v = model.backbone.to_velocity(x0, add_noise(x0, noise, t), t)
    assert torch.allclose(v, velocity_target(x0, noise), atol=1e-5)
    # Below t_min the division is floored: bounded, finite velocities.
    tiny = torch.tensor([1e-6, 0.0])
    assert torch.isfinite(model.backbone.to_velocity(x0, add_noise(x0, noise, tiny), tiny)).all()
