"""Configs of the frozen encoders around the backbone: the pixel <-> latent codec and the text
encoder.

They sit below :mod:`genprop.configs` (which re-exports both) so that the modules building these
encoders (:mod:`genprop.modeling.codec`, :mod:`genprop.modeling.text`) and a backbone family's
folder reader, which builds the codec on the meta device to check a pipeline's geometry, never
import :mod:`genprop.configs`, which imports the backbone families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass
class CodecConfig:
    """Pixel <-> latent codec."""

    kind: Literal["space_to_depth", "wan_vae", "learned"] = "space_to_depth"
    patch: int = 4  # space_to_depth: pixels per latent cell along each axis
    # space_to_depth: latents = (pixels - shift) / scale, to ~zero mean / unit variance (see codec)
    shift: float = 0.0
    scale: float = 1.0
    # wan_vae: local diffusers folder; learned: folder with codec.json + codec.safetensors
    # (written by ``python -m training.codec_train``)
    path: str | None = None
    subfolder: str | None = "vae"
    vae_config: dict[str, Any] | None = None  # wan_vae: config dict (random init in tests)
    # learned (genprop/modeling/learned_codec.py): filled in from codec.json when ``path`` is read
    latent_channels: int = 8  # latent channels C
    width: int = 16  # channels of the first conv stage (doubled per downsample, at most 4x)
    downsamples: int = 2  # stride-2 stages (0-4): spatial factor unshuffle * 2**downsamples
    unshuffle: int = 1  # pixel-unshuffle factor before the first conv (Wan2.2's patch_size)
    linear_skip: int = 0  # 1: a linear path (cells <-> latents) beside the convolutions


@dataclass
class TextConfig:
    """Prompt -> (B, L, dim) embeddings."""

    kind: Literal["hashing", "transformers"] = "hashing"
    dim: int = 64
    max_tokens: int = 16
    buckets: int = 1024  # hashing: size of the fixed random word table
    seed: int = 0  # hashing: seed of the fixed random word table
    path: str | None = None  # transformers: local folder with tokenizer + encoder
