"""Dataclass configs for GenProp models and the named size presets.

Every config is JSON-serialisable (``to_dict`` / ``from_dict``) so that ``save_pretrained`` can
write it to ``config.json`` and ``from_pretrained`` can rebuild the exact same architecture. The
backbone's config belongs to its family (``genprop/backbones/<kind>/config.py``; ``DiTConfig`` and
``WanConfig`` are re-exported here), picked by ``backbone.kind`` through
:mod:`genprop.backbones.registry`; the codec and text configs live in
:mod:`genprop.encoder_configs`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genprop.backbones.dit.config import DiTConfig
from genprop.backbones.family import BackboneConfig
from genprop.backbones.registry import get_family
from genprop.backbones.wan.config import WanConfig
from genprop.config_checks import check_config
from genprop.encoder_configs import CodecConfig, TextConfig
from genprop.sampling_options import SamplingConfig

__all__ = [
    "PRESETS",
    "CodecConfig",
    "DiTConfig",
    "GenPropConfig",
    "TextConfig",
    "WanConfig",
    "preset",
]


@dataclass
class GenPropConfig:
    """A whole GenProp model: backbone, codec, text encoder, SCE/MPD sizes and clip geometry."""

    # Any registered family's config (DiTConfig, WanConfig, ...); the tiny DiT by default.
    backbone: BackboneConfig = field(default_factory=DiTConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    text: TextConfig = field(default_factory=TextConfig)
    sce_blocks: int = 3  # N: the SCE copies the backbone's first N blocks (paper: 24)
    num_frames: int = 8  # pixel frames per clip (chunk length in propagate)
    height: int = 64
    width: int = 64
    timestep_shift: float = 1.0  # SD3-style shift of the sampling schedule (>1: noisier)
    # Ours, beyond the paper: a zero-initialised per-element gate that copies the content video
    # into the prediction where the model decides nothing changes
    # (genprop/modeling/content_gate.py).
    content_gate: bool = False
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenPropConfig:
        """Rebuild from :meth:`to_dict` output.

        Every field is checked (type, range, parameter budget) by
        :func:`genprop.config_checks.check_config` before anything is built.

        Raises:
            ValueError: If a field is unknown, the backbone kind is not a registered family's
                (the message lists them), or a value is invalid
                (:class:`genprop.field_checks.ConfigError`, naming the field).
        """
        cfg = cls._from_fields(data)
        check_config(cfg)
        return cfg

    @classmethod
    def from_folder(cls, path: str | Path, *, kind: str, **options: Any) -> GenPropConfig:
        """The config of a pretrained pipeline folder, read by the ``kind`` family's reader.

        Args:
            path: The local folder (nothing is downloaded).
            kind: The backbone family that reads it (``"wan"``: Wan2.x I2V diffusers folders).
            **options: The reader's options: ``sce_blocks``, ``num_frames``, ``height``,
                ``width``, ``text_max_tokens``, ``timestep_shift`` and the family's own (Wan:
                ``transformer_subfolder``); see :func:`genprop.backbones.wan.folder.wan_config`.

        Raises:
            ValueError: If the family has no folder reader, or the folder is not supported
                (the reader names the file and field).
            FileNotFoundError: If a part of the folder's layout is missing.
        """
        family = get_family(kind)
        if family.read_folder is None:
            raise ValueError(f"backbone.kind {kind!r}: this family has no pretrained folders")
        # The reader has checked the folder's configs and the geometry against them.
        return cls._from_fields(family.read_folder(path, **options))

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> GenPropConfig:
        """The config of ``config.json``-form ``data``, its backbone class picked by kind."""
        data = dict(data)
        for name in ("backbone", "codec", "text", "sampling"):
            if not isinstance(data.get(name, {}), dict):
                raise ValueError(f"field {name!r}: expected an object, got {data[name]!r}")
        backbone = dict(data.pop("backbone", {}))
        family = get_family(backbone.get("kind", DiTConfig.kind))
        try:
            return cls(
                backbone=family.config(**backbone),
                codec=CodecConfig(**data.pop("codec", {})),
                text=TextConfig(**data.pop("text", {})),
                sampling=SamplingConfig.from_dict(data.pop("sampling", {})),
                **data,
            )
        except TypeError as err:
            raise ValueError(f"config: unexpected or missing field ({err})") from err


def _dit_preset(
    *,
    dim: int,
    depth: int,
    heads: int,
    sce: int,
    frames: int,
    size: int,
    codec_patch: int,
    text: int,
    pixel_stats: tuple[float, float] = (0.0, 0.5),
    timestep_shift: float = 3.0,
    content_gate: bool = False,
    head_conv: int = 0,
) -> GenPropConfig:
    shift, scale = pixel_stats
    return GenPropConfig(
        # A plain logit-normal puts ~1 % of training times above t = 0.9, where an I2V model
        # decides a clip's content and the sampler starts; shift 3 (SD3 / Wan) puts ~14 % there.
        timestep_shift=timestep_shift,
        # Off by default (the paper's model); model.net.overrides.content_gate=true turns it on.
        content_gate=content_gate,
        backbone=DiTConfig(dim=dim, depth=depth, heads=heads, head_conv=head_conv),
        codec=CodecConfig(patch=codec_patch, shift=shift, scale=scale),
        text=TextConfig(dim=text, max_tokens=16, buckets=4096 if text > 64 else 1024),
        sce_blocks=sce,
        num_frames=frames,
        height=size,
        width=size,
    )


# The demo's DiT and clip (both demo presets): 128 wide, 6 blocks, 3 SCE blocks, 8 frames of 64x64.
_DEMO_DIT: dict[str, int] = dict(
    dim=128, depth=6, heads=4, sce=3, frames=8, size=64, codec_patch=4, text=64
)

PRESETS: dict[str, Any] = {
    # Unit tests: 32x32x4 clips, 64 tokens, a few thousand parameters.
    "cpu_test": lambda: _dit_preset(
        dim=32,
        depth=4,
        heads=2,
        sce=2,
        frames=4,
        size=32,
        codec_patch=4,
        text=16,
        timestep_shift=1.0,
    ),
    # CPU demo: 64x64x8 clips -> 16x16 latent (48 ch) -> 8x8 tokens per frame, 512 tokens.
    # pixel_stats: mean / std of toy-world pixels in [-1, 1] (demo shards: -0.20 / 0.29).
    "demo": lambda: _dit_preset(**_DEMO_DIT, pixel_stats=(-0.2, 0.3)),
    # `make demo`: the demo's DiT on the latents of the learned codec (stage 0,
    # codec.kind=learned; its folder is given as codec.path, and its codec.json sets the channels):
    # 64x64x8 clips -> 16x16 latent (16 ch) -> 2x2 patches -> 8x8 tokens per frame, 512 tokens.
    # 2x2 patches keep the pixel demo's token count, so a step costs the same and the two chains
    # compare at equal compute (1x1 patches: 4x the tokens, 16x the attention's cost).
    # The codec normalises its latents itself (shift / scale are not used). head_conv: a residual
    # convolution (width 64) on the output latent grid, without which every 8x8-pixel token shows
    # as a square (Seams 1.6-2.9 -> 0.8-1.3 on the validation cases, docs/experiments.md).
    "demo_latent": lambda: dataclasses.replace(
        _dit_preset(**_DEMO_DIT, head_conv=64),
        # `make demo`'s stage 0 (the folder's codec.json is read when the codec is built).
        codec=CodecConfig(
            kind="learned", latent_channels=16, width=64, downsamples=0, unshuffle=4, linear_skip=1
        ),
    ),
    # `make demo-gpu` (one H100/H200): the toy world at 128x128x16 -> 32x32 latent (48 ch) ->
    # 16x16 tokens per frame, 4096 tokens; the "small" preset's width and depth on toy-world pixels.
    "toy_gpu": lambda: _dit_preset(
        dim=384,
        depth=12,
        heads=6,
        sce=6,
        frames=16,
        size=128,
        codec_patch=4,
        text=128,
        pixel_stats=(-0.2, 0.3),
    ),
    # GPU sizes (natural video, pixel std ~0.5 as EDM's sigma_data):
    # 256x256x16 clips -> 32x32 latent (192 ch) -> 16x16 tokens per frame, 4096 tokens.
    "small": lambda: _dit_preset(
        dim=384, depth=12, heads=6, sce=6, frames=16, size=256, codec_patch=8, text=256
    ),
    "base": lambda: _dit_preset(
        dim=768, depth=12, heads=12, sce=6, frames=16, size=256, codec_patch=8, text=512
    ),
    "large": lambda: _dit_preset(
        dim=1152, depth=28, heads=16, sce=14, frames=16, size=256, codec_patch=8, text=512
    ),
}


def preset(name: str) -> GenPropConfig:
    """Return a fresh config for a named preset ("cpu_test", "demo", "toy_gpu", "small", ...).

    Raises:
        ValueError: If the name is unknown.
    """
    if name not in PRESETS:
        raise ValueError(f"preset: unknown name {name!r}, expected one of {sorted(PRESETS)}")
    return PRESETS[name]()
