"""Helpers shared by the genprop tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch

from genprop import GenPropModel, preset


def perturb(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Add seeded noise to every parameter (so zero-initialised layers become non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def make_batch(cfg, batch: int = 2, seed: int = 0) -> dict:
    """A random GenProp training batch at the config's clip size."""
    gen = torch.Generator().manual_seed(seed)
    t, h, w = cfg.num_frames, cfg.height, cfg.width
    mask = torch.zeros(batch, t, h, w)
    mask[:, :, h // 4 : h // 2, w // 4 : 3 * w // 4] = 1.0
    return {
        "target": torch.rand(batch, t, 3, h, w, generator=gen) * 2 - 1,
        "first": torch.rand(batch, 3, h, w, generator=gen) * 2 - 1,
        "sce": torch.rand(batch, t, 3, h, w, generator=gen) * 2 - 1,
        "mask": mask,
        "task": torch.arange(batch) % 5,
        "prompt": ["track colored regions", ""][:batch] + [""] * max(0, batch - 2),
    }


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


def tiny_genprop_model(content_gate: bool = False) -> GenPropModel:
    """Seeded cpu_test GenProp model: backbone with random (non-zero) weights, SCE re-copied."""
    torch.manual_seed(0)
    cfg = preset("cpu_test")
    cfg.content_gate = content_gate
    model = GenPropModel.from_config(cfg)
    perturb(model.backbone, seed=1)
    model.reset_genprop_modules()
    return model
