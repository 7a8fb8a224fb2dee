"""The tiny model learns one toy pair (slow: opt in with -m slow)."""

from __future__ import annotations

import pytest
import torch

from genprop import GenPropModel, LossWeights, VideoBatch, preset, training_losses


def _toy_pair(cfg) -> VideoBatch:
    """A white square moving right on grey; the SCE video has the square recoloured red."""
    t, h, w = cfg.num_frames, cfg.height, cfg.width
    target = torch.full((1, t, 3, h, w), -0.2)
    mask = torch.zeros(1, t, h, w)
    for i in range(t):
        x0 = 4 + 3 * i
        target[0, i, :, 10:20, x0 : x0 + 10] = 1.0
        mask[0, i, 10:20, x0 : x0 + 10] = 1.0
    sce = target.clone()
    sce[:, :, 1:] = torch.where(mask[:, :, None].bool(), -1.0, sce[:, :, 1:])
    return VideoBatch(
        target=target,
        first=target[:, 0],
        sce=sce,
        mask=mask,
        task=torch.tensor([1]),
        prompt=["recolour"],
    )


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["i2v", "genprop"])
def test_tiny_model_overfits_one_pair(stage):
    torch.manual_seed(0)
    cfg = preset("cpu_test")
    # Token width (64) above the per-token output (48 latent channels, patch 1): no bottleneck, so
    # the velocity of a fixed (noise, time) pair is exactly representable.
    cfg.backbone.dim, cfg.backbone.patch = 64, 1
    model = GenPropModel.from_config(cfg)
    batch = _toy_pair(model.config)
    params = model.trainable_parameters(stage, train_backbone=True)
    opt = torch.optim.Adam(params, lr=3e-3)
    weights = LossWeights(grad=0.0)
    history = []
    for _ in range(150):
        # Same noise and time every step: the pair is fully learnable, the loss can reach ~0.
        losses = training_losses(
            model,
            batch,
            stage=stage,
            weights=weights,
            cfg_dropout=0.0,
            generator=torch.Generator().manual_seed(0),
        )
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append(losses["diffusion"].item())
    assert history[-1] < history[0] / 10, history[::15]
