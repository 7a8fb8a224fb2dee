"""Ulysses sequence parallelism for Wan blocks: an attention processor for their self-attention.

A Wan block (``WanTransformerBlock``) is left as diffusers wrote it; only the processor of its
self-attention ``attn1`` is replaced (:func:`use_sequence_parallel`), the way diffusers' own
processors are swapped. The block hands the processor this rank's token shard and the RoPE tables
of the *whole* sequence (:meth:`~genprop.backbones.wan.backbone.WanBackbone.condition` builds them
from the full grid). The processor computes q, k, v and Wan's RMSNorm across all heads on the
shard, trades the token split for a head split (:func:`~genprop.scale.sequence_parallel.
ulysses_attention`), applies RoPE with the full tables and attends over the whole sequence with
``heads / size`` heads, then trades back and applies the output projection on the shard.
The cross-attention ``attn2`` (queries from the shard, keys and values from the replicated text
and image tokens) needs no communication and keeps diffusers' processor.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from einops import rearrange
from torch import nn

from genprop.scale.sequence_parallel import SequenceParallel, ulysses_attention


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding, as ``WanAttnProcessor`` applies it (same operations and dtypes).

    Args:
        x: (B, N, H, d) queries or keys.
        cos, sin: (1, N, 1, d) tables of ``WanRotaryPosEmbed`` (interleaved pairs).
    """
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class UlyssesWanAttnProcessor:
    """Self-attention processor of a Wan block's ``attn1`` under sequence parallelism.

    Args:
        sp: The sequence-parallel group.
        inner: The processor it replaces (kept to restore it, and for its attention backend).
    """

    def __init__(self, sp: SequenceParallel, inner: Any) -> None:
        self.sp = sp
        self.inner = inner

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """This rank's tokens (B, n, D) -> their self-attention output (B, n, D).

        Raises:
            ValueError: for a call that is not Wan's self-attention (context, mask or no RoPE).
        """
        if encoder_hidden_states is not None or attention_mask is not None or rotary_emb is None:
            raise ValueError(
                "sequence-parallel Wan attention: self-attention with RoPE only "
                "(no context, no mask)"
            )
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = (
                attn.to_q(hidden_states),
                attn.to_k(hidden_states),
                attn.to_v(hidden_states),
            )
        # RMSNorm across all heads: on the shard, before the heads are split over ranks.
        query, key = attn.norm_q(query), attn.norm_k(key)
        q, k, v = (rearrange(x, "b n (h d) -> b n h d", h=attn.heads) for x in (query, key, value))
        cos, sin = rotary_emb

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # whole-sequence tables
            return dispatch_attention_fn(
                q, k, v, backend=getattr(self.inner, "_attention_backend", None)
            )

        out = ulysses_attention(q, k, v, sp=self.sp, length=cos.shape[1], attend=attend)
        out = rearrange(out, "b n h d -> b n (h d)").type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def use_sequence_parallel(block: nn.Module, sp: SequenceParallel) -> None:
    """Swap the processor of ``block.attn1`` (a ``WanTransformerBlock`` or a copy) for
    :class:`UlyssesWanAttnProcessor` over ``sp``, or back to the original for ``sp.size == 1``.

    Raises:
        ValueError: If the group size does not divide the heads (naming
            ``trainer.sequence_parallel``).
    """
    attn = block.attn1
    current = attn.processor
    original = current.inner if isinstance(current, UlyssesWanAttnProcessor) else current
    if not sp.active:
        attn.set_processor(original)
        return
    sp.check_heads(attn.heads)
    attn.set_processor(UlyssesWanAttnProcessor(sp, original))
