"""Wan2.x image-to-video through diffusers, behind GenProp's backbone interface.

Wraps (never forks) a ``WanTransformer3DModel`` whose I2V conditioning is channel concatenation:
``in_channels = 2·z_dim + 4`` = ``[x_t (16), given-frames mask (4), first-frame latent (16)]`` as in
Wan2.1/2.2 I2V. Its pieces are exposed as the interface expects: the Conv3d patch embedding (which
the SCE copies), the condition embedder (timestep + text; GenProp's task embedding is added to the
timestep embedding ``temb`` before Wan's ``time_proj``), the blocks and the output head (norm_out +
scale_shift_table + proj_out). Timesteps: Wan uses σ·1000 with the same rectified flow as ours.

Wan2.1-I2V's CLIP image tokens (``image_dim``) go in as its pipeline passes them: the condition
embedder's ``image_embedder`` projects the first frame's penultimate CLIP hidden states and they are
concatenated *before* the 512 text tokens; every block's cross-attention reads them through its
``add_k_proj``/``add_v_proj``. A Wan2.2-A14B expert is one :class:`WanBackbone` (``expert=1`` builds
the low-noise ``transformer_2``); routing by timestep is
:class:`~genprop.modeling.model.GenPropModel`'s.
Supported configs: :mod:`genprop.backbones.wan.variants`. Weights load from a local folder only
(``local_files_only=True``); nothing is downloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from einops import rearrange
from torch import nn

from genprop.backbones.base import Backbone, Conditioning
from genprop.backbones.wan.config import WanConfig
from genprop.backbones.wan.diffusers_config import plain_config
from genprop.backbones.wan.variants import WAN_TEXT_TOKENS_WITH_IMAGE, check_transformer_config

if TYPE_CHECKING:
    from genprop.scale.sequence_parallel import SequenceParallel


class WanPatchEmbed(nn.Module):
    """(B, T', C_in, h, w) -> (B, N, D) through Wan's Conv3d patch embedding."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(rearrange(x, "b t c h w -> b c t h w").to(self.conv.weight.dtype))
        return rearrange(x, "b d t h w -> b (t h w) d").contiguous()


class WanBackbone(Backbone):
    """A diffusers Wan transformer split into embed / condition / blocks / final."""

    def __init__(
        self,
        transformer: nn.Module,
        *,
        latent_channels: int,
        mask_channels: int,
        gradient_checkpointing: bool = False,
        first_frame_by_replacement: bool = False,
    ) -> None:
        super().__init__()
        cfg = transformer.config
        check_transformer_config(
            dict(cfg), where="config.backbone", expand_timesteps=first_frame_by_replacement
        )
        expected = latent_channels if first_frame_by_replacement else 2 * latent_channels
        expected += 0 if first_frame_by_replacement else mask_channels
        if cfg.in_channels != expected or cfg.out_channels != latent_channels:
            layout = "first-frame replacement" if first_frame_by_replacement else "I2V concat"
            raise ValueError(
                f"config.backbone: Wan in/out channels {cfg.in_channels}/{cfg.out_channels}, "
                f"expected "
                f"{expected}/{latent_channels} for a {latent_channels}-channel codec ({layout})"
            )
        self.first_frame_by_replacement = first_frame_by_replacement
        self.dim = cfg.num_attention_heads * cfg.attention_head_dim
        self.latent_channels = latent_channels
        self.mask_channels = mask_channels
        self.patch_size = tuple(int(p) for p in cfg.patch_size)
        self.text_dim = int(cfg.text_dim)
        self.image_dim: int | None = None if cfg.image_dim is None else int(cfg.image_dim)
        self.gradient_checkpointing = gradient_checkpointing
        # From the class (time embedder, RoPE, modulation tables, norms); the pieces below keep
        # diffusers' attribute names (only the patch embedding moves, and it is not kept).
        self.keep_in_fp32_modules = tuple(type(transformer)._keep_in_fp32_modules or ())
        # Pieces are registered here (not the whole transformer) so each weight has one name.
        self.patch_embedder = WanPatchEmbed(transformer.patch_embedding)
        self.rope = transformer.rope
        self.condition_embedder = transformer.condition_embedder
        self.blocks = transformer.blocks
        self.norm_out = transformer.norm_out
        self.proj_out = transformer.proj_out
        self.scale_shift_table = transformer.scale_shift_table

    @classmethod
    def build(
        cls,
        cfg: WanConfig,
        *,
        latent_channels: int,
        mask_channels: int,
        load_weights: bool = True,
        expert: int = 0,
    ) -> WanBackbone:
        """Load from ``cfg.path`` (local) or build randomly from ``cfg.transformer_config``.

        Args:
            cfg: The backbone config (its ``transformer_config`` / ``transformer_2_config`` are
                filled in from the folder when loading).
            latent_channels: The codec's latent channels.
            mask_channels: Channels of the given-frames mask.
            load_weights: Load the weights from ``cfg.path`` (else random init from the config).
            expert: 0 = ``cfg.subfolder`` (Wan2.2-A14B: high noise), 1 = ``cfg.subfolder_2``.
        """
        from diffusers import WanTransformer3DModel

        name = "transformer_config" if expert == 0 else "transformer_2_config"
        subfolder = cfg.subfolder if expert == 0 else cfg.subfolder_2
        stored = getattr(cfg, name)
        if stored is not None:
            check_transformer_config(
                stored, where=f"config.backbone.{name}", expand_timesteps=cfg.expand_timesteps
            )
        if cfg.path is not None and subfolder is not None and (load_weights or stored is None):
            transformer = WanTransformer3DModel.from_pretrained(
                cfg.path, subfolder=subfolder, local_files_only=True
            )
            setattr(cfg, name, plain_config(transformer.config))
        elif stored is not None:
            transformer = WanTransformer3DModel.from_config(stored)
        else:
            raise ValueError(f"config.backbone: wan needs 'path' (a local folder) or '{name}'")
        return cls(
            transformer,
            latent_channels=latent_channels,
            mask_channels=mask_channels,
            gradient_checkpointing=cfg.gradient_checkpointing,
            first_frame_by_replacement=cfg.expand_timesteps,
        )

    def condition(
        self,
        t: torch.Tensor,
        grid: tuple[int, int, int],
        context: torch.Tensor | None,
        context_mask: torch.Tensor | None,
        extra: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> Conditioning:
        """As ``WanTimeTextImageEmbedding.forward``, with ``extra`` added to ``temb``.

        Wan's cross-attention takes no mask: padded text tokens are zeros (as in Wan's pipeline).
        With ``image_dim`` the context is ``[image_embedder(image), text]`` as in
        ``WanTransformer3DModel.forward``; the text must then be 512 tokens (diffusers' attention
        processor takes the last 512 context tokens as text).

        Args:
            image: (B, N_img, image_dim) CLIP tokens (penultimate hidden states of the first
                frame); required exactly when the transformer has ``image_dim``.
        """
        if (image is None) != (self.image_dim is None):
            raise ValueError(
                "image tokens: this Wan transformer "
                + ("needs" if self.image_dim else "takes no")
                + " CLIP image tokens (image_dim "
                + f"{self.image_dim}; GenPropModel.encode_image gives them)"
            )
        ce = self.condition_embedder
        b = t.shape[0]
        dtype = self.proj_out.weight.dtype
        steps = self.token_timesteps(t, grid)
        freq = ce.timesteps_proj(steps.flatten().float() * 1000.0)
        temb = ce.time_embedder(freq.to(next(ce.time_embedder.parameters()).dtype)).to(dtype)
        temb = temb.unflatten(0, steps.shape)  # (B, D), or (B, N, D) with per-token timesteps
        if extra is not None:
            temb = temb + (extra if temb.dim() == 2 else extra[:, None]).to(dtype)
        block_time = ce.time_proj(ce.act_fn(temb)).unflatten(-1, (6, -1))
        if context is None:
            length = 1 if image is None else WAN_TEXT_TOKENS_WITH_IMAGE
            context = torch.zeros(b, length, self.text_dim, device=t.device, dtype=dtype)
        ctx = ce.text_embedder(context.to(dtype))
        if image is not None:
            if context.shape[1] != WAN_TEXT_TOKENS_WITH_IMAGE:
                raise ValueError(
                    f"text tokens: {context.shape[1]}, a Wan transformer with image tokens needs "
                    f"{WAN_TEXT_TOKENS_WITH_IMAGE} (config.text.max_tokens)"
                )
            ctx = torch.cat([ce.image_embedder(image.to(dtype)), ctx], dim=1)
        pt, ph, pw = self.patch_size
        shape_probe = torch.empty(1, 0, grid[0] * pt, grid[1] * ph, grid[2] * pw, device=t.device)
        rope = self.rope(shape_probe)
        return Conditioning(
            time=temb, block_time=block_time, context=ctx, context_mask=None, rope=rope, grid=grid
        )

    def token_timesteps(self, t: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Timesteps (B,), or per token (B, N) with first-frame replacement (Wan2.2-TI2V's
        ``expand_timesteps``: the tokens of latent frame 0 hold the clean first frame, t = 0)."""
        if not self.first_frame_by_replacement:
            return t
        per_token = t[:, None].expand(-1, grid[0] * grid[1] * grid[2]).clone()
        per_token[:, : grid[1] * grid[2]] = 0.0
        return per_token

    def i2v_input(self, x_t: torch.Tensor, first_latent: torch.Tensor) -> torch.Tensor:
        """I2V concat (base class), or with first-frame replacement ``x_t`` with its latent frame 0
        replaced by the clean first-frame latent (B, T', C, h, w)."""
        if not self.first_frame_by_replacement:
            return super().i2v_input(x_t, first_latent)
        return torch.cat([first_latent[:, :1].to(x_t.dtype), x_t[:, 1:]], dim=1)

    def pin_first_frame(
        self, velocity: torch.Tensor, x_t: torch.Tensor, first_latent: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """With first-frame replacement, latent frame 0's velocity ``(x_t - first) / t``: every
        Euler step then moves it straight to the clean first-frame latent, which it reaches
        exactly at t = 0 (diffusers' pipeline replaces it after the last step). Frame 0 is
        outside the loss."""
        if not self.first_frame_by_replacement:
            return velocity
        tt = t.clamp_min(1e-4).view(-1, 1, 1, 1).to(velocity.dtype)  # sampling: t > 0
        pinned = (x_t[:, 0] - first_latent[:, 0].to(x_t.dtype)) / tt
        return torch.cat([pinned[:, None].to(velocity.dtype), velocity[:, 1:]], dim=1)

    def run_block(self, block: nn.Module, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """``WanTransformerBlock(hidden_states, encoder_hidden_states, temb, rotary_emb)``."""
        return block(x, cond.context, cond.block_time, cond.rope)

    def use_sequence_parallel(self, block: nn.Module, sp: SequenceParallel) -> None:
        """Swap the self-attention processor of ``block`` (:mod:`genprop.backbones.wan.ulysses`)."""
        from genprop.backbones.wan.ulysses import use_sequence_parallel

        use_sequence_parallel(block, sp)

    def final(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Wan's output head and unpatchify: (B, N, D) -> (B, T', C, h, w)."""
        if cond.time.dim() == 3:  # per-token timesteps (B, N, D), as WanTransformer3DModel
            table = self.scale_shift_table.unsqueeze(0) + cond.time.unsqueeze(2)
            shift, scale = (s.squeeze(2) for s in table.chunk(2, dim=2))
        else:
            shift, scale = (self.scale_shift_table + cond.time.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x)
        t, h, w = cond.grid
        pt, ph, pw = self.patch_size
        return rearrange(
            x,
            "b (t h w) (pt ph pw c) -> b (t pt) c (h ph) (w pw)",
            t=t,
            h=h,
            w=w,
            pt=pt,
            ph=ph,
            pw=pw,
        ).float()
