"""Validation of a :class:`~genprop.configs.GenPropConfig` before anything is allocated.

A model folder's ``config.json`` is untrusted input: a NaN width, a zero patch size or a depth of a
billion must give one clear error naming the field, not a ``ZeroDivisionError`` or gigabytes of
allocation. :func:`check_config` checks every numeric field's type and range, the kinds, the
sub-folder names and two budgets computed analytically from the config:

* :data:`MAX_PARAMETERS` — parameters of the backbone, its SCE copy, the MPD, the content gate
  and the text encoder's word table (100 billion; Wan2.1-I2V-14B with a full-depth SCE copy is
  about 35 billion, Wan2.2-A14B's two experts, each with a full-depth SCE copy, about 62 billion).
* :data:`MAX_TOKENS` — tokens of one clip at the configured size (Wan's 720P, 81-frame clips are
  about 0.3 million).

The backbone's fields, parameter count, experts and token patch come from its family
(:mod:`genprop.backbones.registry`). Messages read ``field 'backbone.dim': expected ..., got ...``;
``GenPropModel.from_pretrained`` prefixes the file. This module reads the config by its fields
(:class:`ModelConfig`) and does not import :mod:`genprop.configs`, which imports it.
"""

from __future__ import annotations

from typing import Protocol

from genprop.backbones.family import BackboneConfig, ParameterEstimate
from genprop.backbones.registry import FAMILIES, family_of
from genprop.encoder_configs import CodecConfig, TextConfig
from genprop.field_checks import (
    BIG,
    ConfigError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_str,
    check_subfolder,
    config_error,
)
from genprop.sampling_options import SamplingConfig

__all__ = [
    "MAX_PARAMETERS",
    "MAX_TOKENS",
    "ConfigError",
    "ModelConfig",
    "check_config",
    "check_float",
    "check_int",
    "estimate_parameters",
]

MAX_PARAMETERS = 100 * 10**9
MAX_TOKENS = 2**22


class ModelConfig(Protocol):
    """The fields of a :class:`~genprop.configs.GenPropConfig` the checks read."""

    backbone: BackboneConfig
    codec: CodecConfig
    text: TextConfig
    sampling: SamplingConfig
    sce_blocks: int
    num_frames: int
    height: int
    width: int
    timestep_shift: float
    content_gate: bool


def _latent_channels(codec: CodecConfig) -> tuple[int, int, int]:
    """(latent channels, spatial factor, temporal factor) the codec config describes."""
    if codec.kind == "space_to_depth":
        return 3 * codec.patch**2, codec.patch, 1
    if codec.kind == "learned":  # per-frame conv autoencoder (genprop/modeling/learned_codec.py)
        return codec.latent_channels, codec.unshuffle * 2**codec.downsamples, 1
    vae = codec.vae_config or {}
    z = vae.get("z_dim", 16)
    z = check_int(z, "codec.vae_config.z_dim", 1, 4096)
    return z, 8, 4


def _check_codec(codec: CodecConfig) -> None:
    check_choice(codec.kind, "codec.kind", ("space_to_depth", "wan_vae", "learned"))
    check_int(codec.latent_channels, "codec.latent_channels", 1, 1024)
    check_int(codec.width, "codec.width", 1, 1024)
    check_int(codec.downsamples, "codec.downsamples", 0, 4)
    check_int(codec.unshuffle, "codec.unshuffle", 1, 4)
    check_int(codec.linear_skip, "codec.linear_skip", 0, 1)
    check_int(codec.patch, "codec.patch", 1, 64)
    check_float(codec.shift, "codec.shift", -1e6, 1e6)
    check_float(codec.scale, "codec.scale", 0.0, 1e6, low_open=True)
    check_optional_str(codec.path, "codec.path")
    check_subfolder(codec.subfolder, "codec.subfolder")
    if codec.vae_config is not None and not isinstance(codec.vae_config, dict):
        raise config_error("codec.vae_config", "null or an object", codec.vae_config)


def _check_text(text: TextConfig) -> None:
    check_choice(text.kind, "text.kind", ("hashing", "transformers"))
    check_int(text.dim, "text.dim", 1, BIG)
    check_int(text.max_tokens, "text.max_tokens", 1, 8192)
    check_int(text.buckets, "text.buckets", 1, 2**24)
    check_int(text.seed, "text.seed", 0, 2**63 - 1)
    check_optional_str(text.path, "text.path")


def _backbone_parameters(cfg: ModelConfig, codec: tuple[int, int, int]) -> ParameterEstimate:
    """Check the backbone fields (through its family); its parameter estimate on a codec of
    ``codec`` = (latent channels, spatial factor, temporal factor)."""
    bb = cfg.backbone
    check_choice(bb.kind, "backbone.kind", tuple(FAMILIES))
    check_bool(bb.gradient_checkpointing, "backbone.gradient_checkpointing")
    family = FAMILIES[bb.kind]
    family.check(bb)
    # The given-frames mask has one channel per pixel frame a latent frame holds.
    latent_channels, _, temporal = codec
    return family.parameters(
        bb, latent_channels=latent_channels, mask_channels=temporal, text_dim=cfg.text.dim
    )


def estimate_parameters(cfg: ModelConfig) -> int:
    """Parameters (and table entries) of the model ``cfg`` describes, computed without building it.

    Counts the backbone, the SCE copy of ``sce_blocks`` blocks with their injection MLPs, the MPD
    (one block and a head; both per expert), the content gate and the hashing text encoder's word
    table. The codec and a ``transformers`` text encoder (read from their folders) are not
    counted. Assumes the fields are valid (call :func:`check_config`).
    """
    codec = _latent_channels(cfg.codec)
    latent_channels = codec[0]
    est = _backbone_parameters(cfg, codec)
    block, d = est.block, est.width
    family = family_of(cfg.backbone)
    p2 = family.token_patch(cfg.backbone) ** 2
    sce = cfg.sce_blocks * (block + 2 * d * d + 2 * d) + d * d + d
    mpd = block + 2 * d + d * d + d + (d + 1) * p2
    gate = (d * d + d + (d + 1) * p2 * latent_channels + 1) if cfg.content_gate else 0
    table = cfg.text.buckets * cfg.text.dim if cfg.text.kind == "hashing" else 0
    return est.total + family.experts(cfg.backbone) * (sce + mpd) + gate + table + 8 * d


def check_config(cfg: ModelConfig) -> None:
    """Check every field of ``cfg`` and the parameter and token budgets.

    Raises:
        ConfigError: naming the first bad field (``'backbone.dim'``, ``'codec.scale'``, ...), what
            was expected and the value found.
    """
    _check_codec(cfg.codec)
    _check_text(cfg.text)
    check_int(cfg.num_frames, "num_frames", 1, 4096)
    check_int(cfg.height, "height", 1, BIG)
    check_int(cfg.width, "width", 1, BIG)
    check_float(cfg.timestep_shift, "timestep_shift", 0.0, 1e3, low_open=True)
    check_bool(cfg.content_gate, "content_gate")
    try:
        cfg.sampling.check()
    except ValueError as err:
        raise ConfigError(str(err)) from None
    codec = _latent_channels(cfg.codec)
    depth = _backbone_parameters(cfg, codec).depth
    check_int(cfg.sce_blocks, "sce_blocks", 1, max(1, depth) if depth else 1024)
    spatial = codec[1]
    cell = spatial * family_of(cfg.backbone).token_patch(cfg.backbone)
    tokens = cfg.num_frames * -(-cfg.height // cell) * -(-cfg.width // cell)
    if tokens > MAX_TOKENS:
        raise config_error(
            "num_frames",
            f"a clip of at most {MAX_TOKENS} tokens (num_frames x height x width / {cell}^2)",
            cfg.num_frames,
        )
    params = estimate_parameters(cfg)
    if params > MAX_PARAMETERS:
        raise ConfigError(
            f"config describes a model of about {params / 1e9:.1f} billion parameters, above "
            f"the limit of {MAX_PARAMETERS / 1e9:g} billion "
            "(genprop.config_checks.MAX_PARAMETERS); "
            "check backbone.dim / backbone.depth / sce_blocks / text.buckets"
        )
