"""Wan2.x image-to-video through diffusers, behind GenProp's backbone interface.

Wraps (never forks) a ``WanTransformer3DModel`` whose I2V conditioning is channel concatenation:
``in_channels = 2·z_dim + 4`` = ``[x_t (16), given-frames mask (4), first-frame latent (16)]`` as in
Wan2.1/2.2 I2V. Its pieces are exposed as the interface expects: the Conv3d patch embedding (which
the SCE copies), the condition embedder (timestep + text; GenProp's task embedding is added to the
timestep embedding ``temb`` before Wan's ``time_proj``), the blocks and the output head (norm_out +
scale_shift_table + proj_out). Timesteps: Wan uses σ·1000 with the same rectified flow as ours.

Not covered: Wan2.1-I2V's CLIP image tokens (``image_dim``) and Wan2.2-TI2V's per-token timesteps.
Weights load from a local folder only (``local_files_only=True``); nothing is downloaded.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from genprop.backbones.base import Backbone, Conditioning
from genprop.codec import _plain_config
from genprop.configs import WanConfig


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
    ) -> None:
        super().__init__()
        cfg = transformer.config
        if cfg.image_dim is not None:
            raise ValueError(
                "config.backbone: Wan with CLIP image tokens (image_dim) is not supported"
            )
        expected = 2 * latent_channels + mask_channels
        if cfg.in_channels != expected or cfg.out_channels != latent_channels:
            raise ValueError(
                f"config.backbone: Wan in/out channels {cfg.in_channels}/{cfg.out_channels}, "
                f"expected "
                f"{expected}/{latent_channels} for a {latent_channels}-channel codec (I2V concat)"
            )
        self.dim = cfg.num_attention_heads * cfg.attention_head_dim
        self.latent_channels = latent_channels
        self.mask_channels = mask_channels
        self.patch_size = tuple(int(p) for p in cfg.patch_size)
        self.text_dim = int(cfg.text_dim)
        self.gradient_checkpointing = gradient_checkpointing
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
        cls, cfg: WanConfig, *, latent_channels: int, mask_channels: int, load_weights: bool = True
    ) -> WanBackbone:
        """Load from ``cfg.path`` (local) or build randomly from ``cfg.transformer_config``."""
        from diffusers import WanTransformer3DModel

        if cfg.path is not None and (load_weights or cfg.transformer_config is None):
            transformer = WanTransformer3DModel.from_pretrained(
                cfg.path, subfolder=cfg.subfolder, local_files_only=True
            )
            cfg.transformer_config = _plain_config(transformer.config)
        elif cfg.transformer_config is not None:
            transformer = WanTransformer3DModel.from_config(cfg.transformer_config)
        else:
            raise ValueError(
                "config.backbone: wan needs 'path' (a local folder) or 'transformer_config'"
            )
        return cls(
            transformer,
            latent_channels=latent_channels,
            mask_channels=mask_channels,
            gradient_checkpointing=cfg.gradient_checkpointing,
        )

    def condition(
        self,
        t: torch.Tensor,
        grid: tuple[int, int, int],
        context: torch.Tensor | None,
        context_mask: torch.Tensor | None,
        extra: torch.Tensor | None = None,
    ) -> Conditioning:
        """As ``WanTimeTextImageEmbedding.forward``, with ``extra`` added to ``temb``.

        Wan's cross-attention takes no mask: padded text tokens are zeros (as in Wan's pipeline).
        """
        ce = self.condition_embedder
        b = t.shape[0]
        dtype = self.proj_out.weight.dtype
        freq = ce.timesteps_proj(t.float() * 1000.0)
        temb = ce.time_embedder(freq.to(next(ce.time_embedder.parameters()).dtype)).to(dtype)
        if extra is not None:
            temb = temb + extra.to(dtype)
        block_time = ce.time_proj(ce.act_fn(temb)).unflatten(1, (6, -1))
        if context is None:
            context = torch.zeros(b, 1, self.text_dim, device=t.device, dtype=dtype)
        ctx = ce.text_embedder(context.to(dtype))
        pt, ph, pw = self.patch_size
        shape_probe = torch.empty(1, 0, grid[0] * pt, grid[1] * ph, grid[2] * pw, device=t.device)
        rope = self.rope(shape_probe)
        return Conditioning(
            time=temb, block_time=block_time, context=ctx, context_mask=None, rope=rope, grid=grid
        )

    def run_block(self, block: nn.Module, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """``WanTransformerBlock(hidden_states, encoder_hidden_states, temb, rotary_emb)``."""
        return block(x, cond.context, cond.block_time, cond.rope)

    def final(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Wan's output head and unpatchify: (B, N, D) -> (B, T', C, h, w)."""
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
