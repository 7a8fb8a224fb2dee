"""Selective Content Encoder (SCE): a trainable copy of the backbone's first N blocks.

Input: its own copy of the backbone's patch embedding applied to the content video's I2V input
(``[content latents, given-frames mask, first-frame latent]``: the content latents sit where
the backbone has x_t), plus the backbone's embedded input tokens through a zero-initialised linear
*fusion* layer — so it can see what changed between the content video and the generation.
After SCE block k, a zero-initialised MLP maps its output to an *injection* that GenProp adds to the
output of backbone block k (scaled by the injection weight). Zero-initialised fusion and injections
make GenProp at initialisation equal to the backbone exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from genprop.backbones.base import Backbone, Conditioning


def _zero_(layer: nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


class InjectionMLP(nn.Module):
    """SCE block output (B, N, D) -> injection (B, N, D); the last layer is zero-initialised."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.GELU("tanh"), nn.Linear(dim, dim))
        _zero_(self.net[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelectiveContentEncoder(nn.Module):
    """Copy of the backbone's patch embedding and first ``num_blocks`` blocks + injections."""

    def __init__(self, backbone: Backbone, num_blocks: int) -> None:
        super().__init__()
        if not 1 <= num_blocks <= backbone.num_blocks:
            raise ValueError(
                f"config.sce_blocks: {num_blocks}, expected 1..{backbone.num_blocks} "
                "(the backbone depth)"
            )
        self.embed = copy.deepcopy(backbone.patch_embedder)
        self.blocks = nn.ModuleList(copy.deepcopy(backbone.blocks[i]) for i in range(num_blocks))
        self.fusion = nn.Linear(backbone.dim, backbone.dim)
        self.injections = nn.ModuleList(InjectionMLP(backbone.dim) for _ in range(num_blocks))
        self.reset_from(backbone)

    @property
    def num_blocks(self) -> int:
        """Number of copied blocks N."""
        return len(self.blocks)

    @torch.no_grad()
    def reset_from(self, backbone: Backbone) -> None:
        """Re-copy the backbone's weights and zero the fusion and the injection outputs."""
        self.embed.load_state_dict(backbone.patch_embedder.state_dict())
        for i, block in enumerate(self.blocks):
            block.load_state_dict(backbone.blocks[i].state_dict())
        _zero_(self.fusion)
        for inj in self.injections:
            _zero_(inj.net[2])

    def forward(
        self,
        backbone: Backbone,
        content_input: torch.Tensor,
        backbone_tokens: torch.Tensor,
        cond: Conditioning,
        *,
        reduce: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
        shard: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Compute the injections.

        Args:
            backbone: The backbone (runs the copied blocks with its conditioning logic).
            content_input: (B, T', C_in, h, w) I2V input built from the content latents.
            backbone_tokens: (B, N, D) the backbone's embedded input tokens (under sequence
                parallelism this rank's shard, as ``shard`` cuts the content tokens).
            cond: The backbone's conditioning for this step.
            reduce: ``reduce(k, injection_k)`` -> a small tensor, computed inside block k's
                checkpointed step in place of returning the injection, so that neither the
                injection nor the reduction's intermediates are kept for backward (they are
                recomputed once with the block). L_grad reduces each block's features to its
                term this way.
            shard: Sequence parallelism: (B, N, D) embedded content tokens -> this rank's
                token shard (``SequenceParallel.shard``); None keeps every token.

        Returns:
            ``num_blocks`` tensors (B, N, D), unscaled injections for backbone blocks 0..N-1, or
            with ``reduce`` its ``num_blocks`` results.
        """
        content_tokens = self.embed(content_input)
        if shard is not None:
            content_tokens = shard(content_tokens)
        x = content_tokens + self.fusion(backbone_tokens)
        recompute = backbone.gradient_checkpointing and torch.is_grad_enabled()
        out = []
        for k, (block, inj) in enumerate(zip(self.blocks, self.injections, strict=True)):
            step = partial(
                _block_and_injection, reduce=None if reduce is None else partial(reduce, k)
            )
            if recompute:  # one checkpointed step: the block and its injection MLP together
                x, injection = checkpoint(step, backbone, block, inj, x, cond, use_reentrant=False)
            else:
                x, injection = step(backbone, block, inj, x, cond)
            out.append(injection)
        return out


def _block_and_injection(
    backbone: Backbone,
    block: nn.Module,
    inj: nn.Module,
    x: torch.Tensor,
    cond: Conditioning,
    *,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SCE step: tokens (B, N, D) -> (block output, its injection), both (B, N, D); with
    ``reduce``, (block output, ``reduce(injection)``)."""
    x = backbone.run_block(block, x, cond)
    injection = inj(x)
    return x, injection if reduce is None else reduce(injection)
