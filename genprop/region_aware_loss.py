"""Region-aware loss terms (paper Eqs. 4–7), as small pure functions on latent-grid tensors.

``L = L_non-mask + λ·L_mask + β·L_grad + γ·L_MPD`` where, with m̃ the edit mask Gaussian-downsampled
to the latent grid and frames 2..T only (latent frames 1..T'-1):

* ``L_non-mask = mean((1 - m̃)·e)``, ``L_mask = mean(m̃·e)`` with ``e`` the per-cell squared
  velocity error averaged over channels, so ``L_non-mask + L_mask`` is exactly the plain MSE;
* ``L_MPD = mean((sigmoid(mask_logits) - m̃)²)``;
* ``L_grad = mean_k mean(m̃_tok · ‖(f_k(V̂ + δ·m̃) - f_k(V̂)) / δ‖₂)``: f_k are the SCE's injections
  (the features that actually enter the generator, after the zero-init MLPs, before the injection
  weight), the perturbation δ·m̃ is added to the content *latents* inside the mask (all channels),
  ‖·‖₂ is over the feature dimension of each token and m̃_tok is m̃ averaged over each token's cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from genprop.scale.sequence_parallel import NO_SEQUENCE_PARALLEL, SequenceParallel

MPD_FORMS = ("mse", "bce_dice")


@dataclass
class LossWeights:
    """Weights of the region-aware loss; a weight of 0 switches its term off (not computed)."""

    mask: float = 2.0  # λ: extra weight of the error inside the edited region
    grad: float = 1.0  # β: SCE sensitivity penalty
    mpd: float = 1.0  # γ: mask prediction decoder
    gate: float = 1.0  # content gate supervision (ours; used only by models with a content gate)
    grad_delta: float = 0.1  # δ: size of the finite-difference perturbation (latent units)
    # Form of L_MPD: "mse" (the paper's: MSE of sigmoid(logits) vs m̃) or "bce_dice" (binary
    # cross-entropy + soft Dice, the segmentation losses: MSE on a small, sparse mask lets the
    # decoder predict "nothing" almost everywhere at little cost).
    mpd_form: str = "mse"

    def __post_init__(self) -> None:
        if self.mpd_form not in MPD_FORMS:
            raise ValueError(
                f"loss_weights.mpd_form: expected one of {MPD_FORMS}, got {self.mpd_form!r}"
            )


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) with replicate padding."""
    radius = max(1, math.ceil(2 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def latent_mask(mask: torch.Tensor, *, spatial_factor: int, temporal_factor: int) -> torch.Tensor:
    """Pixel masks (B, T, H, W) in [0, 1] -> latent-grid masks m̃ (B, T', H/f, W/f).

    Spatially: Gaussian blur (σ = f/2) then f x f average pooling. Temporally: latent frame 0 is
    pixel frame 0; latent frame k ≥ 1 averages its ``temporal_factor`` pixel frames.
    """
    b = mask.shape[0]
    x = rearrange(mask.float(), "b t h w -> (b t) 1 h w")
    if spatial_factor > 1:
        x = F.avg_pool2d(gaussian_blur(x, spatial_factor / 2), spatial_factor)
    x = rearrange(x, "(b t) 1 h w -> b t h w", b=b)
    if temporal_factor > 1:
        rest = rearrange(x[:, 1:], "b (t k) h w -> b t k h w", k=temporal_factor).mean(2)
        x = torch.cat([x[:, :1], rest], dim=1)
    return x.clamp(0, 1)


def region_split_mse(
    pred: torch.Tensor, target: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_non-mask, L_mask) on frames 1..: pred/target (B, T', C, h, w), m (B, T', h, w)."""
    err = (pred[:, 1:].float() - target[:, 1:].float()).pow(2).mean(dim=2)
    m = m[:, 1:]
    return ((1 - m) * err).mean(), (m * err).mean()


def mpd_loss(mask_logits: torch.Tensor, m: torch.Tensor, form: str = "mse") -> torch.Tensor:
    """L_MPD over latent frames 1.. of MPD logits and m̃ (both (B, T', h, w)).

    ``"mse"``: MSE between sigmoid(logits) and m̃ (the paper). ``"bce_dice"``: binary
    cross-entropy (m̃ as soft targets) + soft Dice loss ``1 − (2·Σpm + 1) / (Σp + Σm + 1)`` per
    sample (smoothed by 1 so a sample with an empty mask asks for an empty prediction).
    """
    logits, target = mask_logits[:, 1:].float(), m[:, 1:].float()
    if form == "mse":
        return F.mse_loss(torch.sigmoid(logits), target)
    if form != "bce_dice":
        raise ValueError(f"mpd form: expected one of {MPD_FORMS}, got {form!r}")
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1.0 - (2.0 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    return bce + dice.mean()


def token_mask(m: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """m̃ (B, T', h, w) -> per-token weights (B, T'·h/p·w/p) in the backbones' (t h w) order."""
    pooled = F.avg_pool2d(rearrange(m, "b t h w -> (b t) 1 h w"), patch)
    return rearrange(pooled, "(b t) 1 h w -> b (t h w)", b=m.shape[0])


def feature_sensitivity(
    features_fn: Callable[..., list[torch.Tensor]],
    content: torch.Tensor,
    m: torch.Tensor,
    *,
    delta: float,
    patch: tuple[int, int],
    base: list[torch.Tensor] | None = None,
    sequence_parallel: SequenceParallel = NO_SEQUENCE_PARALLEL,
) -> torch.Tensor:
    """L_grad: masked finite-difference sensitivity of features to the content inside the mask.

    The perturbed pass runs once: each block's term is reduced where the block's features are
    made (``features_fn(..., reduce=...)``, inside its checkpointed step when the encoder
    checkpoints activations), so neither the perturbed features nor the difference are kept for
    backward, and the pass is recomputed once, with its blocks, not once more around them.

    Args:
        features_fn: ``features_fn(content, reduce=None)``: content latents (B, T', C, h, w) ->
            list of features (B, N, D), tokens (t h w); with ``reduce``, ``reduce(k, f_k)`` of
            each block's features instead.
        content: (B, T', C, h, w) the SCE's content latents.
        m: (B, T', h, w) latent-grid mask m̃.
        delta: Finite-difference step δ.
        patch: The backbone's spatial token patch (p_h, p_w).
        base: ``features_fn(content)`` if already computed.
        sequence_parallel: The model's group when its features are token shards
            (``GenPropModel.sce_features``): each block's term is summed on this rank's tokens
            and over the group, normalised by the whole sequence's count, so it is exact.
    """
    sp = sequence_parallel
    base = features_fn(content) if base is None else base
    w = token_mask(m, patch)
    skip = w.shape[1] // m.shape[1]  # latent frame 0's tokens: frames 2..T only
    count = w.shape[0] * (w.shape[1] - skip)
    if sp.active:  # a shard cannot cut frame 0 off: its tokens (and any padding) weigh zero
        w, skip = sp.shard(F.pad(w[:, skip:], (skip, 0))), 0
    else:
        w = w[:, skip:]

    def term(k: int, f1: torch.Tensor) -> torch.Tensor:
        f0 = base[k]
        diff = (f1[:, skip:].float() - f0[:, skip:].float()) / delta
        norm = torch.sqrt(diff.pow(2).sum(-1) + 1e-12)  # eps: finite gradient at zero change
        return sp.all_reduce_sum((w * norm).sum()) / count

    perturbed = content + delta * m[:, :, None].to(content.dtype)
    return torch.stack(features_fn(perturbed, reduce=term)).mean()
