"""Ulysses sequence parallelism (DeepSpeed-Ulysses, as xDiT and Wan's own repository run it):
the primitives.

The ranks of one *sequence-parallel group* (SP group, ``size`` ranks) hold the same sample and
each runs every transformer block on its own contiguous ``1/size`` of the token sequence; only
self-attention needs the whole sequence, and gets it by an all-to-all that trades the token split
for a head split (each rank attends over all tokens with ``heads/size`` heads) and a second
all-to-all back. Everything per token (norms, MLPs, modulation, cross-attention whose keys come
from the replicated text) runs on the shard. Activations per rank shrink by ``size``.

Padding: a sequence of N tokens is padded with zero tokens to a multiple of ``size`` (Wan
81x480x832: 32,760 tokens, divisible by 2, 4 and 8 anyway). Pad tokens run through the blocks but
are dropped before attention (after the all-to-all, where every rank holds the full sequence),
so no real token ever attends to them, and they are cut off when the sequence is gathered.

Gradients. Every collective here is an ``autograd.Function`` with the adjoint of its forward,
under one convention: each rank of an SP group computes the gradient of the *sum of the group's
(identical) losses*. Then, summed over the group, every parameter gradient is ``size`` times the
one-process gradient, whether the parameter acts on the token shard (blocks: partial sums per
rank), before the split (embeddings, conditioning) or after the gather (output heads, run
replicated): so an *average* over the (data x sequence)-parallel ranks (FSDP2's reduce-scatter on
the flattened mesh) is exactly the data-parallel average of one-process gradients. Hence:
:meth:`SequenceParallel.gather` backward is a reduce-scatter (sum), :meth:`SequenceParallel.shard`
backward keeps the local gradient rows (zeros elsewhere), :meth:`SequenceParallel.all_reduce_sum`
backward is an all-reduce (sum), and the all-to-alls are each other's backward.

``size == 1`` (:data:`NO_SEQUENCE_PARALLEL`, the default of every model) makes every method the
identity, so a model without sequence parallelism computes exactly what it did before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

# The backbone's per-step conditioning (genprop.backbones.base.Conditioning, a dataclass): not
# imported, so that these primitives sit below the backbones that use them.
Cond = TypeVar("Cond")

# torch >= 2.13 names them *_single; older versions (the project allows 2.4) *_tensor.
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


@dataclass(frozen=True, eq=False)
class SequenceParallel:
    """This rank's sequence-parallel group.

    Attributes:
        group: The SP group's process group (None: no sequence parallelism).
        rank: This rank's index in the group (its token shard).
        size: Ranks in the group (1: every method is the identity).
    """

    group: Any = None
    rank: int = 0
    size: int = 1

    @classmethod
    def from_group(cls, group: Any) -> SequenceParallel:
        """The context of ``group`` (a process group; this rank must belong to it)."""
        return cls(group, dist.get_rank(group), dist.get_world_size(group))

    def __deepcopy__(self, memo: dict) -> SequenceParallel:
        return self  # a process group is shared, never copied (copies of modules keep it)

    @property
    def active(self) -> bool:
        """Whether tokens are split (``size > 1``)."""
        return self.size > 1

    def padded_length(self, length: int) -> int:
        """``length`` rounded up to a multiple of the group size."""
        return -(-length // self.size) * self.size

    def check_heads(self, heads: int) -> None:
        """Raise unless the group size divides ``heads`` (the all-to-all splits heads).

        Raises:
            ValueError: one line naming ``trainer.sequence_parallel``.
        """
        if heads % self.size:
            raise ValueError(
                f"trainer.sequence_parallel: {self.size} does not divide the backbone's "
                f"{heads} attention heads"
            )

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, ...) full sequence -> (B, N_pad / size, ...) this rank's contiguous shard."""
        return _Shard.apply(x, self) if self.active else x

    def gather(self, x: torch.Tensor, length: int) -> torch.Tensor:
        """(B, N_pad / size, ...) shards -> (B, length, ...) the full sequence, padding dropped."""
        return _Gather.apply(x, self, length) if self.active else x

    def heads_to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All-to-all (B, N_pad / size, H, d) -> (B, N_pad, H / size, d)."""
        return _AllToAll.apply(x, self, True) if self.active else x

    def tokens_to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """All-to-all (B, N_pad, H / size, d) -> (B, N_pad / size, H, d)."""
        return _AllToAll.apply(x, self, False) if self.active else x

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of ``x`` over the group (e.g. per-shard partial sums of a loss term)."""
        return _AllReduceSum.apply(x, self) if self.active else x

    def local_condition(self, cond: Cond) -> Cond:
        """``cond`` for this rank's tokens: per-token conditioning (``time`` (B, N, D) and
        ``block_time`` (B, N, ...), Wan2.2-TI2V's per-token timesteps) sharded like the tokens.
        RoPE tables and the grid stay whole: attention applies RoPE after the all-to-all, where
        each rank holds the full sequence, and the output heads run on the gathered sequence."""
        if not self.active or cond.time.dim() != 3:
            return cond
        return replace(cond, time=self.shard(cond.time), block_time=self.shard(cond.block_time))


NO_SEQUENCE_PARALLEL = SequenceParallel()


def enable_sequence_parallel(model: nn.Module, sp: SequenceParallel) -> None:
    """Run ``model`` (a :class:`~genprop.modeling.model.GenPropModel`) sequence-parallel over
    ``sp`` (``sp.size == 1``: back to one process).

    Every block that attends over the tokens gets its family's sequence-parallel attention
    (:meth:`~genprop.backbones.base.Backbone.use_sequence_parallel`): the backbone's blocks and
    their SCE and MPD copies, of every expert; and the model shards its tokens
    (``GenPropModel.forward``). Every rank of the group must then call the model together, with
    the same inputs.

    Raises:
        ValueError: If the group size does not divide the attention heads, or the backbone family
            has no sequence-parallel attention (one line naming ``trainer.sequence_parallel``).
    """
    for expert in range(model.num_experts):
        backbone, sce, mpd = model.route(torch.empty(0), expert)
        for block in [*backbone.blocks, *sce.blocks, mpd.block]:
            backbone.use_sequence_parallel(block, sp)
    model.sequence_parallel = sp if sp.active else NO_SEQUENCE_PARALLEL


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    sp: SequenceParallel,
    length: int,
    attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Self-attention over the whole sequence from this rank's token shard.

    Args:
        q, k, v: (B, N_pad / size, H, d) projections of this rank's tokens, all heads (after any
            norm over all heads, e.g. Wan's RMSNorm across heads).
        sp: The SP group.
        length: N, the real sequence length (without padding).
        attend: ``attend(q, k, v)`` on (B, N, H / size, d) for the whole sequence (RoPE with the
            full tables goes in here) -> (B, N, H / size, d).

    Returns:
        (B, N_pad / size, H, d): the attention output of this rank's tokens, all heads.
    """
    sp.check_heads(q.shape[2])
    batch = q.shape[0]
    # One all-to-all for q, k and v together (3x the bytes, a third of the latency).
    qkv = sp.heads_to_tokens(torch.cat([q, k, v], dim=0))[:, :length]
    out = attend(*qkv.split(batch, dim=0))
    out = F.pad(out, (0, 0, 0, 0, 0, sp.padded_length(length) - length))
    return sp.tokens_to_heads(out)


def _pad_tokens(x: torch.Tensor, sp: SequenceParallel) -> torch.Tensor:
    """Zero-pad dim 1 of ``x`` to a multiple of the group size."""
    extra = sp.padded_length(x.shape[1]) - x.shape[1]
    return torch.cat([x, x.new_zeros(x.shape[0], extra, *x.shape[2:])], dim=1) if extra else x


class _Shard(torch.autograd.Function):
    """Forward: this rank's slice of the padded sequence; backward: zeros outside it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sp: SequenceParallel) -> torch.Tensor:
        ctx.sp, ctx.length = sp, x.shape[1]
        local = sp.padded_length(x.shape[1]) // sp.size
        # A copy, not a view: a view would keep the whole sequence alive with the shard.
        return _pad_tokens(x, sp).narrow(1, sp.rank * local, local).clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        sp, local = ctx.sp, grad.shape[1]
        full = grad.new_zeros(grad.shape[0], local * sp.size, *grad.shape[2:])
        full.narrow(1, sp.rank * local, local).copy_(grad)
        return full[:, : ctx.length], None


class _Gather(torch.autograd.Function):
    """Forward: all-gather of the shards (padding dropped); backward: reduce-scatter (sum)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sp: SequenceParallel, length: int) -> torch.Tensor:
        ctx.sp = sp
        send = rearrange(x, "b n ... -> n b ...").contiguous()
        out = send.new_empty(sp.size * send.shape[0], *send.shape[1:])
        _all_gather(out, send, group=sp.group)
        return rearrange(out, "n b ... -> b n ...")[:, :length].contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        sp = ctx.sp
        send = rearrange(_pad_tokens(grad, sp), "b n ... -> n b ...").contiguous()
        out = send.new_empty(send.shape[0] // sp.size, *send.shape[1:])
        _reduce_scatter(out, send, op=dist.ReduceOp.SUM, group=sp.group)
        return rearrange(out, "n b ... -> b n ...").contiguous(), None, None


def _all_to_all(x: torch.Tensor, sp: SequenceParallel, to_tokens: bool) -> torch.Tensor:
    """heads -> tokens: chunk j of the heads goes to rank j, which stacks what it receives from
    ranks 0..size-1 along the tokens (rank i holds tokens i·n..(i+1)·n); tokens -> heads inverts
    it."""
    if to_tokens:
        send = rearrange(x, "b n (r h) d -> r b n h d", r=sp.size).contiguous()
    else:
        send = rearrange(x, "b (r n) h d -> r b n h d", r=sp.size).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=sp.group)
    if to_tokens:
        return rearrange(recv, "r b n h d -> b (r n) h d")
    return rearrange(recv, "r b n h d -> b n (r h) d")


class _AllToAll(torch.autograd.Function):
    """The Ulysses all-to-all; its backward is the inverse all-to-all of the gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sp: SequenceParallel, to_tokens: bool) -> torch.Tensor:
        ctx.sp, ctx.to_tokens = sp, to_tokens
        return _all_to_all(x, sp, to_tokens)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _all_to_all(grad, ctx.sp, not ctx.to_tokens), None, None


class _AllReduceSum(torch.autograd.Function):
    """Sum over the group; backward sums the gradients (the adjoint under the convention of the
    module docstring: every rank's loss depends on every rank's contribution)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sp: SequenceParallel) -> torch.Tensor:
        ctx.sp = sp
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=sp.group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        out = grad.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=ctx.sp.group)
        return out, None
