"""Pixel <-> latent codecs with one interface.

* :class:`SpaceToDepthCodec` — parameter-free, exact: each ``p x p`` pixel cell becomes ``3·p²``
  channels; ``decode(encode(x)) == x`` bit for bit. Lets small runs train without a pretrained VAE.
* :class:`~genprop.modeling.learned_codec.LearnedVideoCodec` (``codec.kind: learned``) — a small
  per-frame conv autoencoder trained on the toy world (stage 0 of the demo), read from its folder.
* :class:`DiffusersVAECodec` — wraps diffusers' ``AutoencoderKLWan`` (8x spatial, 4x temporal,
  16 channels, normalised with the VAE's ``latents_mean`` / ``latents_std``), loaded from a local
  folder or built from a config dict (tests).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from einops import rearrange
from torch import nn

from genprop.backbones.wan.diffusers_config import plain_config
from genprop.encoder_configs import CodecConfig


class LatentCodec(nn.Module, ABC):
    """Interface: videos (B, T, 3, H, W) in [-1, 1] <-> latents (B, T', C, h, w)."""

    latent_channels: int
    spatial_factor: int
    temporal_factor: int

    def latent_frames(self, num_frames: int) -> int:
        """Number of latent frames T' for ``num_frames`` pixel frames (first frame kept alone)."""
        if (num_frames - 1) % self.temporal_factor:
            raise ValueError(
                f"num_frames: {num_frames} frames, expected 1 + a multiple of "
                f"{self.temporal_factor}"
            )
        return 1 + (num_frames - 1) // self.temporal_factor

    def check_size(self, height: int, width: int) -> None:
        """Raise ValueError unless H and W are multiples of the spatial factor."""
        f = self.spatial_factor
        if height % f or width % f:
            raise ValueError(f"video size: {height}x{width}, expected multiples of {f}")

    @abstractmethod
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Videos (B, T, 3, H, W) in [-1, 1] -> latents (B, T', C, h, w)."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, T', C, h, w) -> videos (B, T, 3, H, W) in [-1, 1]."""


class SpaceToDepthCodec(LatentCodec):
    """Exact, parameter-free space-to-depth "latent", normalised as ``(x - shift) / scale``.

    Like a VAE's latent normalisation (``latents_mean`` / ``latents_std``), ``shift`` and ``scale``
    bring the data to roughly zero mean and unit variance, the scale of the flow's noise. Without
    them pixel data in [-1, 1] (std ~0.3) would sit far below the noise for most of the schedule,
    and a small model wastes most of its training steps there. They are fixed constants, so the
    codec stays exact and parameter-free.
    """

    def __init__(self, patch: int, *, shift: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        if patch < 1:
            raise ValueError(f"codec.patch: expected >= 1, got {patch}")
        if scale <= 0:
            raise ValueError(f"codec.scale: expected > 0, got {scale}")
        self.patch = patch
        self.shift, self.scale = float(shift), float(scale)
        self.latent_channels = 3 * patch * patch
        self.spatial_factor = patch
        self.temporal_factor = 1

    def pack(self, video: torch.Tensor) -> torch.Tensor:
        """Space-to-depth without normalisation: (B, T, c, H, W) -> (B, T, c·p², H/p, W/p).

        Latent element ``(c, p1, p2)`` of cell ``(h, w)`` is pixel ``(c, h·p + p1, w·p + p2)``, so
        per-pixel quantities (e.g. masks) map onto latent elements exactly.
        """
        self.check_size(video.shape[-2], video.shape[-1])
        p = self.patch
        return rearrange(video, "b t c (h p1) (w p2) -> b t (c p1 p2) h w", p1=p, p2=p)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, 3·p², H/p, W/p)."""
        z = self.pack(video)
        return (z - self.shift) / self.scale if (self.shift, self.scale) != (0.0, 1.0) else z

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, T, 3·p², h, w) -> (B, T, 3, h·p, w·p)."""
        p = self.patch
        if (self.shift, self.scale) != (0.0, 1.0):
            latents = latents * self.scale + self.shift
        return rearrange(latents, "b t (c p1 p2) h w -> b t c (h p1) (w p2)", p1=p, p2=p)


class DiffusersVAECodec(LatentCodec):
    """``AutoencoderKLWan`` behind the codec interface (deterministic: posterior mode)."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae
        cfg = vae.config
        self.latent_channels = int(cfg.z_dim)
        # Wan2.2's 48-channel VAE also patchifies its input (config "patch_size").
        self.spatial_factor = 2 ** (len(cfg.dim_mult) - 1) * int(
            getattr(cfg, "patch_size", None) or 1
        )
        self.temporal_factor = 2 ** sum(bool(x) for x in cfg.temperal_downsample)
        mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, 1, -1, 1, 1)
        std = torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, 1, -1, 1, 1)
        self.register_buffer("latents_mean", mean, persistent=False)
        self.register_buffer("latents_std", std, persistent=False)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> normalised latents (B, 1 + (T-1)/4, 16, H/8, W/8)."""
        self.check_size(video.shape[-2], video.shape[-1])
        self.latent_frames(video.shape[1])
        x = rearrange(video, "b t c h w -> b c t h w").to(self.vae.dtype)
        z = self.vae.encode(x).latent_dist.mode()
        z = rearrange(z, "b c t h w -> b t c h w").float()
        return (z - self.latents_mean) / self.latents_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, T', 16, h, w) -> video (B, 1 + 4(T'-1), 3, 8h, 8w)."""
        z = latents.float() * self.latents_std + self.latents_mean
        z = rearrange(z, "b t c h w -> b c t h w").to(self.vae.dtype)
        x = self.vae.decode(z).sample
        return rearrange(x, "b c t h w -> b t c h w").float().clamp(-1, 1)


def build_codec(cfg: CodecConfig, *, load_weights: bool = True) -> LatentCodec:
    """Build the codec described by ``cfg``.

    Args:
        cfg: The codec config. For ``wan_vae``, ``cfg.vae_config`` is filled in from the folder;
            for ``learned``, its architecture fields from the folder's ``codec.json``.
        load_weights: For ``wan_vae`` / ``learned`` with a path: load its weights (False: random
            init from the stored config, used by ``GenPropModel.from_pretrained`` which loads its
            own weights).
    """
    if cfg.kind == "space_to_depth":
        return SpaceToDepthCodec(cfg.patch, shift=cfg.shift, scale=cfg.scale)
    if cfg.kind == "learned":
        from genprop.modeling.learned_codec import build_learned_codec

        return build_learned_codec(cfg, load_weights=load_weights)
    if cfg.kind != "wan_vae":
        raise ValueError(
            "config.codec.kind: expected 'space_to_depth', 'learned' or 'wan_vae', "
            f"got {cfg.kind!r}"
        )
    from diffusers import AutoencoderKLWan

    if cfg.path is not None and (load_weights or cfg.vae_config is None):
        vae = AutoencoderKLWan.from_pretrained(
            cfg.path, subfolder=cfg.subfolder, local_files_only=True
        )
        cfg.vae_config = plain_config(vae.config)
    elif cfg.vae_config is not None:
        vae = AutoencoderKLWan.from_config(cfg.vae_config)
    else:
        raise ValueError("config.codec: wan_vae needs 'path' (a local folder) or 'vae_config'")
    vae.requires_grad_(False)
    return DiffusersVAECodec(vae)
