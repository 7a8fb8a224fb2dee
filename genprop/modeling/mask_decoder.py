"""Mask Prediction Decoder (MPD): a trainable copy of the backbone's last block + an MLP head.

It reads the penultimate block's output (the last block's input, injections included) and predicts
one mask logit map per latent frame at latent resolution: each token emits ``p_h·p_w`` logits,
unpatchified onto the latent grid. :func:`upsample_masks` maps them to pixel frames and size.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from genprop.backbones.base import Backbone, Conditioning


class MaskPredictionDecoder(nn.Module):
    """Last-block copy + LayerNorm + MLP -> mask logits (B, T', h, w)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        pt, ph, pw = backbone.patch_size
        if pt != 1:
            raise ValueError(f"backbone patch {backbone.patch_size}: MPD needs temporal patch 1")
        self.patch = (ph, pw)
        self.block = copy.deepcopy(backbone.blocks[-1])
        self.norm = nn.LayerNorm(backbone.dim, eps=1e-6)
        self.head = nn.Sequential(
            nn.Linear(backbone.dim, backbone.dim), nn.GELU("tanh"), nn.Linear(backbone.dim, ph * pw)
        )

    @torch.no_grad()
    def reset_from(self, backbone: Backbone) -> None:
        """Re-copy the backbone's last block."""
        self.block.load_state_dict(backbone.blocks[-1].state_dict())

    def features(
        self, backbone: Backbone, penultimate: torch.Tensor, cond: Conditioning
    ) -> torch.Tensor:
        """Penultimate tokens (B, N, D) -> the copied last block's output (B, N, D).

        The content gate reads these too (``genprop.modeling.content_gate``): they are the only
        trainable
        cross-token computation after the SCE's injections.
        """
        return backbone.apply_block(self.block, penultimate, cond)

    def logits(self, features: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """:meth:`features` (B, N, D) -> mask logits (B, T', h, w) at latent resolution."""
        logits = self.head(self.norm(features))
        t, h, w = cond.grid
        ph, pw = self.patch
        return rearrange(
            logits, "b (t h w) (p1 p2) -> b t (h p1) (w p2)", t=t, h=h, w=w, p1=ph, p2=pw
        )

    def forward(
        self, backbone: Backbone, penultimate: torch.Tensor, cond: Conditioning
    ) -> torch.Tensor:
        """Penultimate features (B, N, D) -> mask logits (B, T', h, w) at latent resolution."""
        return self.logits(self.features(backbone, penultimate, cond), cond)


def upsample_masks(
    masks: torch.Tensor, size: tuple[int, int], *, temporal_factor: int = 1
) -> torch.Tensor:
    """Latent-grid masks (B, T', h, w) -> pixel masks (B, 1 + tf·(T'-1), H, W) (bilinear).

    Latent frame 0 covers pixel frame 0; latent frame k ≥ 1 covers ``temporal_factor`` frames.
    """
    first, rest = masks[:, :1], masks[:, 1:]
    rest = repeat(rest, "b t h w -> b (t k) h w", k=temporal_factor)
    frames = torch.cat([first, rest], dim=1)
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
