"""Tiny latent-video DiT for image-to-video (ours, trainable from scratch).

Tokens are ``patch x patch`` cells of each latent frame (temporal patch 1). Position enters through
3D rotary embeddings on queries/keys (time, height, width split of each head, as in Wan), so any
clip length and size work. Blocks are AdaLN-zero DiT blocks (modulation from the timestep + task
embedding, zero-initialised gates) with an optional text cross-attention; the output head is
zero-initialised, so a fresh model predicts zero velocity. An optional residual convolution on the
output latent grid (``head_conv``, zero at init) smooths the seams between tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genprop.backbones.base import Backbone, Conditioning, unpatchify
from genprop.backbones.dit.config import DiTConfig
from genprop.backbones.dit.rope import rope_attention, rope_tables

if TYPE_CHECKING:
    from genprop.scale.sequence_parallel import SequenceParallel


def timestep_features(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1]: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = scale * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class PatchEmbed(nn.Module):
    """(B, T', C_in, h, w) -> (B, T'·h/p·w/p, D) by a linear map of each p x p cell."""

    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(in_channels * patch * patch, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        x = rearrange(x, "b t c (h p1) (w p2) -> b (t h w) (c p1 p2)", p1=p, p2=p)
        # The model's inputs arrive in fp32 (sharded training casts no forward input, so that the
        # flow time reaches the time embedding uncast): the compute dtype starts here.
        return self.proj(x.to(self.proj.weight.dtype))


class DiTBlock(nn.Module):
    """AdaLN-zero block: self-attention (3D RoPE, qk-RMSNorm), text cross-attention, MLP."""

    def __init__(self, *, dim: int, heads: int, mlp_ratio: float, cross_attention: bool) -> None:
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6)
        self.attn_out = nn.Linear(dim, dim)
        self.cross_norm = nn.LayerNorm(dim, eps=1e-6) if cross_attention else None
        self.cross_q = nn.Linear(dim, dim) if cross_attention else None
        self.cross_kv = nn.Linear(dim, 2 * dim) if cross_attention else None
        self.cross_out = nn.Linear(dim, dim) if cross_attention else None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU("tanh"), nn.Linear(hidden, dim))
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)  # AdaLN-zero: each block starts as the identity
        # (q, k, v, rope) -> attention; sequence parallelism swaps in its all-to-all version
        # (genprop.backbones.dit.ulysses).
        self.self_attention: Callable[..., torch.Tensor] = rope_attention
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Tokens (B, N, D) -> (B, N, D)."""
        mods = self.modulation(cond.block_time)[:, None].chunk(6, dim=-1)
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = rearrange(self.qkv(h), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        attn = self.self_attention(self.q_norm(q), self.k_norm(k), v, cond.rope)
        x = x + gate1 * self.attn_out(rearrange(attn, "b h n d -> b n (h d)"))
        if self.cross_q is not None and cond.context is not None:
            q = rearrange(self.cross_q(self.cross_norm(x)), "b n (h d) -> b h n d", h=self.heads)
            k, v = rearrange(
                self.cross_kv(cond.context), "b l (two h d) -> two b h l d", two=2, h=self.heads
            )
            mask = None if cond.context_mask is None else cond.context_mask[:, None, None, :]
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + self.cross_out(rearrange(attn, "b h n d -> b n (h d)"))
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class TinyDiT(Backbone):
    """Latent-video DiT I2V backbone (see module docstring)."""

    def __init__(
        self, cfg: DiTConfig, *, latent_channels: int, mask_channels: int, text_dim: int
    ) -> None:
        super().__init__()
        if cfg.dim % cfg.heads or (cfg.dim // cfg.heads) % 2:
            raise ValueError(f"config.backbone: dim {cfg.dim} / heads {cfg.heads} must be even")
        self.cfg = cfg
        self.dim = cfg.dim
        self.latent_channels = latent_channels
        self.mask_channels = mask_channels
        self.patch_size = (1, cfg.patch, cfg.patch)
        self.text_dim = text_dim
        self.gradient_checkpointing = cfg.gradient_checkpointing
        self.x0_t_min = cfg.t_min
        in_channels = 2 * latent_channels + mask_channels
        self.patch_embedder = PatchEmbed(in_channels, cfg.dim, cfg.patch)
        self.time_mlp = nn.Sequential(
            nn.Linear(256, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim)
        )
        self.text_proj = (
            nn.Sequential(
                nn.Linear(text_dim, cfg.dim), nn.GELU("tanh"), nn.Linear(cfg.dim, cfg.dim)
            )
            if cfg.text_cross_attention
            else None
        )
        self.blocks = nn.ModuleList(
            DiTBlock(
                dim=cfg.dim,
                heads=cfg.heads,
                mlp_ratio=cfg.mlp_ratio,
                cross_attention=cfg.text_cross_attention,
            )
            for _ in range(cfg.depth)
        )
        self.final_norm = nn.LayerNorm(cfg.dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.final_proj = nn.Linear(cfg.dim, cfg.patch * cfg.patch * latent_channels)
        for layer in (self.final_modulation, self.final_proj):  # zero output at init (DiT)
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.head_conv = None
        if cfg.head_conv:
            c, w = latent_channels, cfg.head_conv
            self.head_conv = nn.Sequential(
                nn.Conv2d(c, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, c, 3, padding=1)
            )
            nn.init.zeros_(self.head_conv[2].weight)  # the identity at init
            nn.init.zeros_(self.head_conv[2].bias)

    def condition(
        self,
        t: torch.Tensor,
        grid: tuple[int, int, int],
        context: torch.Tensor | None,
        context_mask: torch.Tensor | None,
        extra: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> Conditioning:
        """Timestep in [0, 1] (B,), text (B, L, text_dim) -> :class:`Conditioning`."""
        if image is not None:
            raise ValueError("image tokens: the tiny DiT takes none (image_dim is None)")
        temb = self.time_mlp(timestep_features(t, 256).to(self.final_proj.weight.dtype))
        if extra is not None:
            temb = temb + extra
        ctx = None
        if self.text_proj is not None and context is not None:
            ctx = self.text_proj(context.to(temb.dtype))
        rope = rope_tables(grid, self.dim // self.cfg.heads, self.cfg.rope_theta, t.device)
        return Conditioning(
            time=temb,
            block_time=F.silu(temb),
            context=ctx,
            context_mask=context_mask if ctx is not None else None,
            rope=rope,
            grid=grid,
        )

    def i2v_input(self, x_t: torch.Tensor, first_latent: torch.Tensor) -> torch.Tensor:
        """``[x_t, mask, first_latent]`` as the base class, with the first frame's latent on
        every frame when ``cfg.first_frame_broadcast`` (see :class:`~genprop.configs.DiTConfig`).

        Args:
            x_t: (B, T', C, h, w) noisy latents.
            first_latent: (B, T', C, h, w) codec encoding of ``[v_1, 0, ..., 0]``.
        """
        if self.cfg.first_frame_broadcast:
            first_latent = first_latent[:, :1].expand_as(first_latent)
        return super().i2v_input(x_t, first_latent)

    def to_velocity(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Head output -> velocity: ``(x_t - x̂0) / max(t, t_min)`` for ``prediction="x0"``.

        Args:
            out: (B, T', C, h, w) head output (x̂0 or v).
            x_t: (B, T', C, h, w) the noisy input.
            t: (B,) flow time.
        """
        if self.cfg.prediction == "velocity":
            return out
        tt = t.to(out.dtype).clamp(min=self.x0_t_min).view(-1, 1, 1, 1, 1)
        return (x_t.to(out.dtype) - out) / tt

    def run_block(self, block: nn.Module, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Apply a block (or a copy of one) to tokens (B, N, D)."""
        return block(x, cond)

    def use_sequence_parallel(self, block: nn.Module, sp: SequenceParallel) -> None:
        """Swap the self-attention of ``block`` (see :mod:`genprop.backbones.dit.ulysses`)."""
        from genprop.backbones.dit.ulysses import use_sequence_parallel

        use_sequence_parallel(block, sp)

    def final(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Tokens (B, N, D) -> velocity (B, T', C, h, w)."""
        shift, scale = self.final_modulation(F.silu(cond.time))[:, None].chunk(2, dim=-1)
        x = self.final_proj(self.final_norm(x) * (1 + scale) + shift)
        out = unpatchify(x, cond.grid, (self.cfg.patch, self.cfg.patch))
        if self.head_conv is None:
            return out
        return out + self.head_conv(out.flatten(0, 1)).view_as(out)
