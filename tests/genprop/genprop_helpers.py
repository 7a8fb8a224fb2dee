"""Helpers shared by the genprop tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from genprop import GenPropModel, VideoBatch, preset
from genprop.backbones.wan.pretrained import wan_config


def perturb(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Add seeded noise to every parameter (so zero-initialised layers become non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def make_batch(cfg, batch: int = 2, seed: int = 0) -> VideoBatch:
    """A random GenProp training batch at the config's clip size."""
    gen = torch.Generator().manual_seed(seed)
    t, h, w = cfg.num_frames, cfg.height, cfg.width
    mask = torch.zeros(batch, t, h, w)
    mask[:, :, h // 4 : h // 2, w // 4 : 3 * w // 4] = 1.0
    return VideoBatch(
        target=torch.rand(batch, t, 3, h, w, generator=gen) * 2 - 1,
        first=torch.rand(batch, 3, h, w, generator=gen) * 2 - 1,
        sce=torch.rand(batch, t, 3, h, w, generator=gen) * 2 - 1,
        mask=mask,
        task=torch.arange(batch) % 5,
        prompt=["track colored regions", ""][:batch] + [""] * max(0, batch - 2),
    )


def step_inputs(model: GenPropModel, batch: int = 2, seed: int = 0) -> dict:
    """Random inputs of one denoising step (latent space)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    video = torch.rand(batch, cfg.num_frames, 3, cfg.height, cfg.width, generator=gen) * 2 - 1
    lat = model.codec.encode(video)
    ctx, ctx_mask = model.encode_prompts(["a red car", ""][:batch], batch)
    return {
        "x_t": torch.randn(lat.shape, generator=gen),
        "t": torch.rand(batch, generator=gen),
        "first_latent": model.encode_first_frame(video[:, 0], cfg.num_frames),
        "content": torch.randn(lat.shape, generator=gen),
        "context": ctx,
        "context_mask": ctx_mask,
    }


def tiny_wan_model(folder: Path, geometry: dict[str, Any]) -> GenPropModel:
    """GenProp on the Wan pipeline ``folder`` (seeded): backbone frozen, SCE weights perturbed."""
    torch.manual_seed(0)
    net = GenPropModel.from_config(wan_config(folder, **geometry))
    net.freeze_backbone()
    perturb(net.content_encoder, seed=2, scale=0.02)
    return net


def tiny_genprop_model(content_gate: bool = False) -> GenPropModel:
    """Seeded cpu_test GenProp model: backbone with random (non-zero) weights, SCE re-copied."""
    torch.manual_seed(0)
    cfg = preset("cpu_test")
    cfg.content_gate = content_gate
    model = GenPropModel.from_config(cfg)
    perturb(model.backbone, seed=1)
    model.reset_genprop_modules()
    return model


def one_line_error(
    capsys: pytest.CaptureFixture[str], main: Callable[[list[str]], int], argv: list[str]
) -> str:
    """Run a CLI ``main`` expecting a user error: exit 2 and one stderr line, no traceback."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err
