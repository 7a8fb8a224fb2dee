"""Validation preview: generate one clip and lay it out as a video grid for TensorBoard.

Columns, left to right: SCE input | G's first frame (held) | prediction | target | predicted mask.
TensorBoard's ``add_video`` needs ``moviepy`` (not a dependency of this project); without it the
grid is logged with ``add_image`` as a still: one row per frame, the five columns side by side.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from einops import rearrange, repeat

from genprop.inference.sampler import sample_latents
from genprop.modeling.mask_decoder import upsample_masks
from genprop.modeling.model import GenPropModel
from genprop.video_batch import VideoBatch


@torch.no_grad()
def generate_preview(
    model: GenPropModel,
    batch: VideoBatch,
    *,
    stage: str,
    steps: int,
    guidance: float,
    seed: int,
) -> torch.Tensor:
    """Sample the first clip of a batch and build the grid.

    Args:
        model: the model (EMA weights already swapped in by the caller).
        batch: a pixel batch (stage "genprop" reads its ``sce`` and ``task``).
        stage: ``"i2v"`` samples the backbone alone (no SCE content, no mask).
        steps: Euler steps; guidance: CFG scale; seed: noise seed.

    Returns:
        ``(T, 3, H, 5 * W)`` uint8 grid video.
    """
    target = batch.target[:1]
    first = batch.first[:1]
    # Stage "i2v" batches may have no SCE video: the grid shows the target in its column.
    sce = (target if batch.sce is None else batch.sce)[:1]
    num_frames, (h, w) = target.shape[1], target.shape[-2:]
    first_latent = model.encode_first_frame(first, num_frames)
    content = task = None
    if stage == "genprop":
        content = model.codec.encode(sce)
        task = batch.validate(stage).task[:1]
    gen = torch.Generator().manual_seed(seed)
    latents, mask_logits = sample_latents(
        model,
        first_latent,
        content=content,
        task=task,
        prompts=(batch.prompt or [""])[:1],
        steps=steps,
        guidance=guidance,
        generator=gen,
    )
    pred = model.codec.decode(latents).clamp(-1, 1)[:, :num_frames]
    if mask_logits is None:
        mask = torch.zeros(1, num_frames, h, w, device=target.device)
    else:
        tf = model.codec.temporal_factor
        mask = upsample_masks(mask_logits.sigmoid().float(), (h, w), temporal_factor=tf)
        mask = mask[:, :num_frames]
    columns = [
        sce[0],
        repeat(first[0], "c h w -> t c h w", t=num_frames),
        pred[0],
        target[0],
        repeat(mask[0] * 2 - 1, "t h w -> t c h w", c=3),
    ]
    grid = torch.cat([c.float().cpu() for c in columns], dim=-1)
    return ((grid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def log_preview(experiment: Any, grid: torch.Tensor, *, tag: str, step: int, fps: int = 4) -> str:
    """Write a ``(T, 3, H, W)`` uint8 grid to a TensorBoard ``SummaryWriter``.

    Returns:
        ``"video"`` or ``"image"``, whichever was written.
    """
    if importlib.util.find_spec("moviepy") is not None:
        experiment.add_video(tag, grid.unsqueeze(0), global_step=step, fps=fps)
        return "video"
    still = rearrange(grid, "t c h w -> c (t h) w")
    experiment.add_image(tag, still, global_step=step)
    return "image"
