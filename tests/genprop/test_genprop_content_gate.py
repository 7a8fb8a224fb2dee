"""Content gate: exact blend algebra, zero init, injection weight, the sampler with an open gate,
the supervision target, and that the gate learns to keep exactly the unedited region."""

from __future__ import annotations

import pytest
import torch
from genprop_helpers import perturb, step_inputs, tiny_genprop_model

from genprop import GenPropModel, LossWeights, VideoBatch, preset, training_losses
from genprop.inference.sampler import sample_latents
from genprop.modeling.codec import SpaceToDepthCodec
from genprop.modeling.content_gate import STRENGTH_SCALE, ContentGate, gate_target
from genprop.region_aware_loss import latent_mask


@pytest.fixture
def tiny_model() -> GenPropModel:
    """The cpu_test model with the content gate on (the presets leave it off), backbone random."""
    return tiny_genprop_model(content_gate=True)


def _open_gate(model: GenPropModel, value: float = 1.0) -> None:
    """Make the gate's copy weight ``value`` everywhere (strength ``value``, saturated logits)."""
    with torch.no_grad():
        model.content_gate.head[2].weight.zero_()
        model.content_gate.head[2].bias.fill_(40.0)
        model.content_gate.strength.fill_(value / STRENGTH_SCALE)


def test_blend_is_the_x0_space_interpolation():
    gen = torch.Generator().manual_seed(0)
    shape = (2, 3, 4, 5, 5)
    x0_hat, content, x_t = (torch.randn(shape, generator=gen) for _ in range(3))
    gate = torch.rand(shape, generator=gen)
    t = torch.tensor([0.7, 0.02])  # the second is below t_min
    tau = t.clamp(min=0.05).view(-1, 1, 1, 1, 1)
    velocity = (x_t - x0_hat) / tau
    blended = ContentGate.blend(velocity, gate, x_t, content, t, t_min=0.05)
    expected_x0 = x0_hat + gate * (content - x0_hat)
    torch.testing.assert_close(x_t - tau * blended, expected_x0)
    # g = 0 keeps the velocity, g = 1 gives the velocity that lands on the content.
    torch.testing.assert_close(
        ContentGate.blend(velocity, torch.zeros(shape), x_t, content, t, t_min=0.05), velocity
    )
    torch.testing.assert_close(
        x_t - tau * ContentGate.blend(velocity, torch.ones(shape), x_t, content, t, t_min=0.05),
        content,
    )


def test_gate_is_zero_at_init_and_follows_the_injection_weight(tiny_model):
    assert tiny_model.content_gate is not None
    s = step_inputs(tiny_model, seed=1)
    kw = dict(content=s["content"], context=s["context"], context_mask=s["context_mask"])
    with torch.no_grad():
        ref = tiny_model.backbone(
            s["x_t"], s["t"], s["first_latent"], s["context"], s["context_mask"]
        )
        out = tiny_model(s["x_t"], s["t"], s["first_latent"], **kw)
        assert torch.equal(out.gate, torch.zeros_like(out.gate))
        assert torch.equal(out.velocity, ref)
        perturb(tiny_model.content_gate, seed=2)
        assert tiny_model.content_gate.strength != 0
        half = tiny_model(s["x_t"], s["t"], s["first_latent"], injection_weight=0.5, **kw)
        full = tiny_model(s["x_t"], s["t"], s["first_latent"], injection_weight=1.0, **kw)
        off = tiny_model(s["x_t"], s["t"], s["first_latent"], injection_weight=0.0, **kw)
        text = dict(context=s["context"], context_mask=s["context_mask"])
        no_content = tiny_model(s["x_t"], s["t"], s["first_latent"], **text)
    assert full.gate.abs().max() > 0
    torch.testing.assert_close(half.gate, 0.5 * full.gate)
    assert torch.equal(off.velocity, ref)
    assert no_content.gate is None and torch.equal(no_content.velocity, ref)


def test_open_gate_samples_the_content_video_exactly(tiny_model):
    _open_gate(tiny_model)
    s = step_inputs(tiny_model, seed=3)
    latents, _ = sample_latents(
        tiny_model,
        s["first_latent"],
        content=s["content"],
        task=torch.tensor([0, 1]),
        steps=6,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(latents, s["content"], atol=1e-4, rtol=1e-4)


def test_gate_without_the_option_is_absent():
    model = GenPropModel.from_config(preset("cpu_test"))  # off in the presets: the paper's model
    assert model.content_gate is None
    assert not any(n.startswith("content_gate.") for n, _ in model.named_parameters())


def _copy_task(cfg, seed: int) -> VideoBatch:
    """Target = content everywhere except a square that the target fills with a flat colour."""
    gen = torch.Generator().manual_seed(seed)
    t, h, w = cfg.num_frames, cfg.height, cfg.width
    sce = torch.rand(2, t, 3, h, w, generator=gen) * 2 - 1
    mask = torch.zeros(2, t, h, w)
    mask[:, :, 8:16, 8:16] = 1.0
    target = torch.where(mask[:, :, None].bool(), torch.tensor(0.8), sce)
    return VideoBatch(
        target=target, first=target[:, 0], sce=sce, mask=mask, task=torch.tensor([0, 0])
    )


def test_gate_target_is_the_pixel_mask_for_space_to_depth():
    mask = torch.zeros(1, 2, 8, 8)
    mask[0, 1, 2, 5] = 1.0  # one pixel of frame 1
    codec = SpaceToDepthCodec(4, shift=-0.2, scale=0.3)
    m = latent_mask(mask, spatial_factor=4, temporal_factor=1)
    keep = gate_target(mask, codec, m)
    assert keep.shape == (1, 2, 48, 2, 2)
    # Decoding the target like pixels gives back 1 - mask on every colour channel.
    as_pixels = codec.decode((keep - codec.shift) / codec.scale)  # undo the codec's normalisation
    torch.testing.assert_close(as_pixels, (1 - mask)[:, :, None].expand(-1, -1, 3, -1, -1))
    assert (keep == 0).sum() == 3  # the pixel's three colours, nothing else


def test_gate_learns_to_keep_exactly_the_unedited_region(tiny_model):
    """A hundred steps on random-texture clips: the gate keeps outside the edit, not inside."""
    tiny_model.freeze_backbone()
    params = tiny_model.trainable_parameters("genprop")
    opt = torch.optim.Adam(params, lr=3e-3)
    weights = LossWeights(grad=0.0, mpd=0.0)  # the gate is supervised; the MPD is not trained
    for step in range(120):
        batch = _copy_task(tiny_model.config, seed=step)
        losses = training_losses(
            tiny_model,
            batch,
            stage="genprop",
            weights=weights,
            cfg_dropout=0.0,
            generator=torch.Generator().manual_seed(step),
        )
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
    assert "gate" in losses
    batch = _copy_task(tiny_model.config, seed=999)
    codec = tiny_model.codec
    with torch.no_grad():
        content = codec.encode(batch.sce)
        first = tiny_model.encode_first_frame(batch.first, batch.sce.shape[1])
        t = torch.full((2,), 0.5)
        out = tiny_model(torch.randn(content.shape), t, first, content=content)
    keep = torch.sigmoid(out.gate_logits[:, 1:]).mean(2)  # (B, T'-1, h, w); the edit: cells 2..3
    inside = keep[..., 2:4, 2:4].mean()
    outside = torch.cat([keep[..., :, :2].flatten(), keep[..., :, 4:].flatten()]).mean()
    assert outside > 0.8 and inside < 0.3, (inside, outside)
    # The diffusion loss switched the copy on.
    assert STRENGTH_SCALE * tiny_model.content_gate.strength > 0.5


def test_gate_reads_the_mpd_block_whether_or_not_masks_are_asked_for(tiny_model):
    perturb(tiny_model.content_gate, seed=7)
    s = step_inputs(tiny_model, seed=8)
    with torch.no_grad():
        with_masks = tiny_model(s["x_t"], s["t"], s["first_latent"], content=s["content"])
        without = tiny_model(
            s["x_t"], s["t"], s["first_latent"], content=s["content"], predict_mask=False
        )
        # The MPD's copied block feeds the gate: perturbing it changes the gate's logits.
        perturb(tiny_model.mask_decoder.block, seed=9)
        moved = tiny_model(s["x_t"], s["t"], s["first_latent"], content=s["content"])
    assert without.mask_logits is None and with_masks.mask_logits is not None
    assert torch.equal(with_masks.velocity, without.velocity)
    assert not torch.allclose(moved.gate_logits, with_masks.gate_logits)
