"""The one backbone interface GenProp is written against.

A backbone is an image-to-video latent diffusion transformer split into the pieces GenProp needs:

* ``patch_embedder``: module, I2V input (B, T', C_in, h, w) -> tokens (B, N, D) (the SCE copies it);
* ``condition(t, grid, context, context_mask, extra, image)``: timestep (+ ``extra``, e.g. the
  task embedding, added to the timestep embedding), text (and, for backbones with image tokens such
  as Wan2.1-I2V, the first frame's CLIP tokens ``image``) -> :class:`Conditioning`;
* ``blocks`` (``nn.ModuleList``) and ``run_block(block, x, cond)``, which also runs *copies* of a
  block (SCE, MPD) with the same conditioning;
* ``final(x, cond)``: output head, tokens -> velocity latents (B, T', C, h, w).

The I2V input is the channel concatenation ``[x_t, given-frames mask, first-frame latent]`` as in
Wan2.x I2V: the first-frame latent is the codec's encoding of ``[v_1, 0, 0, ...]`` and the mask is 1
on latent frame 0 (``mask_channels`` = the codec's temporal factor, so Wan's 4-channel mask fits).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:
    from genprop.scale.sequence_parallel import SequenceParallel


@dataclass
class Conditioning:
    """Everything a block needs besides its tokens.

    Attributes:
        time: (B, D) timestep (+ task) embedding read by the output head.
        block_time: What the blocks' AdaLN reads (tiny DiT: (B, D); Wan: (B, 6, D)).
        context: (B, L, D) projected text tokens, or None.
        context_mask: (B, L) bool, True = real token, or None (attend to all).
        rope: Rotary tables for the token grid, or None.
        grid: Token grid (T', h', w').
    """

    time: torch.Tensor
    block_time: torch.Tensor
    context: torch.Tensor | None
    context_mask: torch.Tensor | None
    rope: tuple[torch.Tensor, torch.Tensor] | None
    grid: tuple[int, int, int]


def unpatchify(
    tokens: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int]
) -> torch.Tensor:
    """Per-token outputs (B, T'·h'·w', C·p_h·p_w) in (t h w) order -> (B, T', C, h'·p_h, w'·p_w)."""
    t, h, w = grid
    ph, pw = patch
    return rearrange(
        tokens, "b (t h w) (c p1 p2) -> b t c (h p1) (w p2)", t=t, h=h, w=w, p1=ph, p2=pw
    )


class Backbone(nn.Module, ABC):
    """Interface of an I2V backbone (see module docstring)."""

    dim: int
    latent_channels: int
    mask_channels: int
    patch_size: tuple[int, int, int]
    text_dim: int
    image_dim: int | None = None  # width of the image tokens ``condition`` needs (None: none)
    # Wan2.2-TI2V: the first frame replaces latent frame 0 of x_t instead of channel concat.
    first_frame_by_replacement: bool = False
    patch_embedder: nn.Module
    blocks: nn.ModuleList
    gradient_checkpointing: bool = False
    # Floor of t when a clean estimate is turned into a velocity, (x_t - x0) / max(t, floor).
    x0_t_min: float = 0.05
    # What the wrapped pretrained model keeps in fp32 when loaded in a low precision: diffusers'
    # ``_keep_in_fp32_modules`` of its class (none for our own models). Sharded training follows it.
    keep_in_fp32_modules: tuple[str, ...] = ()

    def keeps_fp32(self, name: str) -> bool:
        """Whether parameter ``name`` (relative to the backbone) stays fp32 under a bf16 policy.

        diffusers' own rule (``load_model_dict_into_meta``): one of the name's dotted components is
        in :attr:`keep_in_fp32_modules` (``blocks.3.norm2.weight`` matches ``norm2``).
        """
        return not set(name.split(".")).isdisjoint(self.keep_in_fp32_modules)

    @property
    def num_blocks(self) -> int:
        """Number of transformer blocks."""
        return len(self.blocks)

    def token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        """Token grid (T', h', w') of latents (B, T', C, h, w)."""
        pt, ph, pw = self.patch_size
        _, t, _, h, w = latents.shape
        if t % pt or h % ph or w % pw:
            raise ValueError(f"latent grid {t}x{h}x{w} not divisible by patch {self.patch_size}")
        return t // pt, h // ph, w // pw

    @abstractmethod
    def condition(
        self,
        t: torch.Tensor,
        grid: tuple[int, int, int],
        context: torch.Tensor | None,
        context_mask: torch.Tensor | None,
        extra: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> Conditioning:
        """Timestep (B,) in [0, 1] (+ ``extra`` added to its embedding), text and image tokens
        (B, N_img, image_dim) (only when ``image_dim`` is set) -> conditioning."""

    @abstractmethod
    def run_block(self, block: nn.Module, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Apply ``block`` (one of ``self.blocks`` or a copy) to tokens (B, N, D)."""

    @abstractmethod
    def final(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Tokens (B, N, D) -> the head's output latents (B, T', C, h, w)."""

    def use_sequence_parallel(self, block: nn.Module, sp: SequenceParallel) -> None:
        """Make ``block`` (one of ``self.blocks`` or a copy) attend over the whole sequence from
        a token shard (:mod:`genprop.scale.sequence_parallel`); ``sp.size == 1`` restores its
        plain attention. Families without it refuse sequence parallelism.

        Raises:
            ValueError: one line naming ``trainer.sequence_parallel``.
        """
        raise ValueError(
            f"trainer.sequence_parallel: {type(self).__name__} has no sequence-parallel attention"
        )

    def apply_block(self, block: nn.Module, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """:meth:`run_block`, through activation checkpointing when enabled and training."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.run_block, block, x, cond, use_reentrant=False)
        return self.run_block(block, x, cond)

    def i2v_input(self, x_t: torch.Tensor, first_latent: torch.Tensor) -> torch.Tensor:
        """Concatenate ``[x_t, mask, first_latent]`` along channels.

        Args:
            x_t: (B, T', C, h, w) noisy latents.
            first_latent: (B, T', C, h, w) codec encoding of ``[v_1, 0, ..., 0]``.

        Returns:
            (B, T', 2C + mask_channels, h, w).
        """
        b, t, _, h, w = x_t.shape
        mask = torch.zeros(b, t, self.mask_channels, h, w, dtype=x_t.dtype, device=x_t.device)
        mask[:, 0] = 1.0
        return torch.cat([x_t, mask, first_latent.to(x_t.dtype)], dim=2)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        first_latent: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Plain I2V prediction (no SCE): velocity (B, T', C, h, w)."""
        inp = self.i2v_input(x_t, first_latent)
        x = self.patch_embedder(inp)
        cond = self.condition(t, self.token_grid(inp), context, context_mask, image=image)
        for block in self.blocks:
            x = self.apply_block(block, x, cond)
        velocity = self.to_velocity(self.final(x, cond), x_t, t)
        return self.pin_first_frame(velocity, x_t, first_latent, t)

    def pin_first_frame(
        self, velocity: torch.Tensor, x_t: torch.Tensor, first_latent: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Velocity of the given frame for backbones that replace it (identity here)."""
        return velocity

    def to_velocity(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The head's output (B, T', C, h, w) as a flow velocity; identity for velocity heads."""
        return out
