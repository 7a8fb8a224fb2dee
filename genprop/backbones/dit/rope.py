"""3D rotary position embedding of the tiny DiT and its self-attention.

Its own module so that the sequence-parallel attention (:mod:`genprop.backbones.dit.ulysses`) and
the blocks (:mod:`genprop.backbones.dit.model`) share it without importing each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rope_tables(
    grid: tuple[int, int, int], head_dim: int, theta: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """3D rotary tables (cos, sin), each (N, head_dim / 2) for N = T'·h'·w' tokens."""
    hw_dim = 2 * (head_dim // 6)
    dims = (head_dim - 2 * hw_dim, hw_dim, hw_dim)
    angles = []
    for size, d, axis in zip(grid, dims, range(3), strict=True):
        freqs = 1.0 / theta ** (torch.arange(0, d, 2, device=device).float() / d)
        pos = torch.arange(size, device=device).float()
        ang = pos[:, None] * freqs[None]  # (size, d/2)
        shape = [1, 1, 1, ang.shape[-1]]
        shape[axis] = size
        angles.append(ang.view(shape).expand(*grid, ang.shape[-1]))
    ang = torch.cat(angles, dim=-1).reshape(-1, head_dim // 2)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate (B, H, N, hd) queries/keys by the tables of :func:`rope_tables`."""
    cos, sin = rope
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.type_as(x)


def rope_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """Self-attention of (B, H, N, hd) queries, keys and values, q and k rotated by ``rope``."""
    if rope is not None:
        q, k = apply_rope(q, rope), apply_rope(k, rope)
    return F.scaled_dot_product_attention(q, k, v)
