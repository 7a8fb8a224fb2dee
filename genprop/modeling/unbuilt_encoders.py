"""Stand-ins for the frozen encoders of a model trained from precomputed latents.

A model built with ``GenPropModel(config, encoders=False)`` (training from a ``genprop-cache``
folder) never builds its VAE, text encoder or image encoder: their outputs come from the cache.
These stand-ins keep what the rest of the model reads from them (the codec's latent geometry, the
encoders' widths) and raise :class:`EncoderNotBuiltError` when anything tries to run them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from contracts.jsonfile import read_json_object
from genprop.encoder_configs import CodecConfig
from genprop.modeling.codec import LatentCodec

_WHY = (
    "was not built: this model was made with encoders=False (training from a latent cache, "
    "data.latents=...); build it with its encoders to encode pixels"
)


class EncoderNotBuiltError(RuntimeError):
    """A frozen encoder of a model built without encoders was called."""


class UnbuiltCodec(LatentCodec):
    """The VAE's latent geometry without the VAE (encode/decode raise)."""

    def __init__(self, *, latent_channels: int, spatial_factor: int, temporal_factor: int) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.spatial_factor = spatial_factor
        self.temporal_factor = temporal_factor

    def encode(self, video: torch.Tensor) -> NoReturn:
        """Raises :class:`EncoderNotBuiltError`."""
        raise EncoderNotBuiltError(f"the VAE (codec) {_WHY}")

    def decode(self, latents: torch.Tensor) -> NoReturn:
        """Raises :class:`EncoderNotBuiltError`."""
        raise EncoderNotBuiltError(f"the VAE (codec) {_WHY}")


class UnbuiltEncoder(nn.Module):
    """A text or image encoder's width without the encoder (calling it raises)."""

    def __init__(self, what: str, dim: int) -> None:
        super().__init__()
        self.what = what
        self.dim = dim

    def forward(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Raises :class:`EncoderNotBuiltError`."""
        raise EncoderNotBuiltError(f"the {self.what} {_WHY}")


def unbuilt_codec(cfg: CodecConfig) -> UnbuiltCodec:
    """The geometry of the ``wan_vae`` codec ``cfg`` describes, read from its config only.

    Raises:
        ValueError: If ``cfg`` is not a ``wan_vae`` codec with ``vae_config`` or ``path``.
    """
    if cfg.kind != "wan_vae":
        raise ValueError(f"config.codec.kind: {cfg.kind!r} has no VAE to leave unbuilt")
    vae = cfg.vae_config
    if vae is None:
        if cfg.path is None:
            raise ValueError("config.codec: wan_vae needs 'path' (a local folder) or 'vae_config'")
        vae = read_json_object(
            Path(cfg.path) / (cfg.subfolder or "") / "config.json", what="JSON config"
        )
    # Same geometry as genprop.modeling.codec.DiffusersVAECodec (Wan2.2's 48-channel VAE also
    # patchifies).
    return UnbuiltCodec(
        latent_channels=int(vae["z_dim"]),
        spatial_factor=2 ** (len(vae["dim_mult"]) - 1) * int(vae.get("patch_size") or 1),
        temporal_factor=2 ** sum(bool(x) for x in vae["temperal_downsample"]),
    )
