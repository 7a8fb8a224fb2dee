"""Ulysses sequence parallelism for the tiny DiT: the self-attention of a :class:`DiTBlock`.

The block computes q, k, v and their per-head RMSNorm on this rank's token shard and hands them to
its ``self_attention``; under sequence parallelism that is :class:`UlyssesDiTAttention`, which
trades the token split for a head split (:func:`~genprop.scale.sequence_parallel.
ulysses_attention`), rotates q and k with the RoPE tables of the whole sequence (the conditioning
builds them from the full grid) and attends over all tokens with ``heads / size`` heads. The text
cross-attention reads replicated keys and values with queries from the shard: unchanged.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from genprop.backbones.dit.rope import rope_attention
from genprop.scale.sequence_parallel import SequenceParallel, ulysses_attention


class UlyssesDiTAttention:
    """``DiTBlock.self_attention`` over a token shard.

    Args:
        sp: The sequence-parallel group.
    """

    def __init__(self, sp: SequenceParallel) -> None:
        self.sp = sp

    def __call__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """(B, H, n, hd) projections of this rank's tokens -> their attention output, same shape.

        Raises:
            ValueError: without RoPE tables (they give the whole sequence's length).
        """
        if rope is None:
            raise ValueError("sequence-parallel DiT attention: needs the RoPE tables")

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            q, k, v = (rearrange(x, "b n h d -> b h n d") for x in (q, k, v))
            return rearrange(rope_attention(q, k, v, rope), "b h n d -> b n h d")

        q, k, v = (rearrange(x, "b h n d -> b n h d") for x in (q, k, v))
        out = ulysses_attention(q, k, v, sp=self.sp, length=rope[0].shape[0], attend=attend)
        return rearrange(out, "b n h d -> b h n d")


def use_sequence_parallel(block: nn.Module, sp: SequenceParallel) -> None:
    """Give ``block`` (a :class:`DiTBlock` or a copy) :class:`UlyssesDiTAttention` over ``sp``,
    or its plain attention back for ``sp.size == 1``.

    Raises:
        TypeError: If ``block`` is not a :class:`DiTBlock`.
        ValueError: If the group size does not divide the heads (naming
            ``trainer.sequence_parallel``).
    """
    if not hasattr(block, "self_attention"):  # a DiTBlock (not imported: it imports this module)
        raise TypeError(f"use_sequence_parallel: expected a DiTBlock, got {type(block).__name__}")
    if not sp.active:
        block.self_attention = rope_attention
        return
    sp.check_heads(block.heads)
    block.self_attention = UlyssesDiTAttention(sp)
