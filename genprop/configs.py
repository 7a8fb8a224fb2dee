"""Dataclass configs for GenProp models and the named size presets.

Every config is JSON-serialisable (``to_dict`` / ``from_dict``) so that ``save_pretrained`` can
write it to ``config.json`` and ``from_pretrained`` can rebuild the exact same architecture.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from genprop.sampling_options import SamplingConfig


@dataclass
class DiTConfig:
    """Our tiny latent-video DiT (image-to-video, rectified flow)."""

    kind: Literal["dit"] = "dit"
    dim: int = 128
    depth: int = 6
    heads: int = 4
    patch: int = 2  # spatial patch on the latent grid; temporal patch is always 1
    mlp_ratio: float = 4.0
    text_cross_attention: bool = True  # cross-attention on precomputed text embeddings
    rope_theta: float = 10000.0
    gradient_checkpointing: bool = False
    # Give every frame's tokens the first-frame latent (SVD-style) instead of frame 0 only (Wan
    # style): copying the given frame becomes a per-token operation, which a small model trained
    # from scratch learns in hundreds of steps instead of thousands. The which-frame-is-given mask
    # still marks frame 0. Same channel layout either way.
    first_frame_broadcast: bool = True
    # What the output head predicts. "x0": the clean latents x̂0, turned into the flow velocity
    # v = (x_t - x̂0) / max(t, t_min) (as JiT, "Back to Basics", 2025). A token of a pixel-space
    # codec holds p²·C values (192 at the demo size), more than a narrow DiT's width: predicting v
    # (which contains the noise) through that bottleneck cannot work, predicting the clean data
    # (which lies near a low-dimensional manifold) can. "velocity": the head predicts v directly.
    prediction: Literal["x0", "velocity"] = "x0"
    t_min: float = 0.05  # x0 prediction: floor of t in the division (bounds the 1/t² loss weight)


@dataclass
class WanConfig:
    """A diffusers ``WanTransformer3DModel`` (Wan2.x I2V, channel-concat conditioning).

    Wan2.2-I2V-A14B is two experts: ``subfolder`` (high-noise, t >= ``boundary_ratio``) and
    ``subfolder_2`` (low-noise). Wan2.1-I2V reads CLIP image tokens of the first frame from
    ``image_encoder/`` + ``image_processor/`` under ``image_encoder_path``.
    """

    kind: Literal["wan"] = "wan"
    path: str | None = None  # local diffusers folder; never downloaded
    subfolder: str | None = "transformer"
    # The transformer's config dict; filled from ``path`` when loading, or given directly for a
    # randomly initialised (test) model. Stored so ``from_pretrained`` can rebuild without ``path``.
    transformer_config: dict[str, Any] | None = None
    gradient_checkpointing: bool = False
    # Mixture of experts (model_index.json "boundary_ratio"; None = one transformer).
    subfolder_2: str | None = None
    transformer_2_config: dict[str, Any] | None = None
    boundary_ratio: float | None = None
    # Pipeline folder holding image_encoder/ (CLIPVisionModel) and image_processor/ (frozen, never
    # exported, like the text encoder); needed when the transformer has "image_dim".
    image_encoder_path: str | None = None
    # Wan2.2-TI2V (model_index.json "expand_timesteps"): the first frame replaces latent frame 0,
    # whose tokens get timestep 0, instead of the I2V channel concatenation.
    expand_timesteps: bool = False


@dataclass
class CodecConfig:
    """Pixel <-> latent codec."""

    kind: Literal["space_to_depth", "wan_vae"] = "space_to_depth"
    patch: int = 4  # space_to_depth: pixels per latent cell along each axis
    # space_to_depth: latents = (pixels - shift) / scale, to ~zero mean / unit variance (see codec)
    shift: float = 0.0
    scale: float = 1.0
    path: str | None = None  # wan_vae: local diffusers folder
    subfolder: str | None = "vae"
    vae_config: dict[str, Any] | None = None  # wan_vae: config dict (random init in tests)


@dataclass
class TextConfig:
    """Prompt -> (B, L, dim) embeddings."""

    kind: Literal["hashing", "transformers"] = "hashing"
    dim: int = 64
    max_tokens: int = 16
    buckets: int = 1024  # hashing: size of the fixed random word table
    seed: int = 0  # hashing: seed of the fixed random word table
    path: str | None = None  # transformers: local folder with tokenizer + encoder


@dataclass
class GenPropConfig:
    """A whole GenProp model: backbone, codec, text encoder, SCE/MPD sizes and clip geometry."""

    backbone: DiTConfig | WanConfig = field(default_factory=DiTConfig)
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
            ValueError: If a field is unknown, the backbone kind is not "dit" or "wan", or a value
                is invalid (:class:`genprop.config_checks.ConfigError`, naming the field).
        """
        from genprop.config_checks import check_config

        data = dict(data)
        for name in ("backbone", "codec", "text", "sampling"):
            if not isinstance(data.get(name, {}), dict):
                raise ValueError(f"field {name!r}: expected an object, got {data[name]!r}")
        backbone = dict(data.pop("backbone", {}))
        kind = backbone.get("kind", "dit")
        if kind not in ("dit", "wan"):
            raise ValueError(f"config.backbone.kind: expected 'dit' or 'wan', got {kind!r}")
        try:
            bb = DiTConfig(**backbone) if kind == "dit" else WanConfig(**backbone)
            cfg = cls(
                backbone=bb,
                codec=CodecConfig(**data.pop("codec", {})),
                text=TextConfig(**data.pop("text", {})),
                sampling=SamplingConfig.from_dict(data.pop("sampling", {})),
                **data,
            )
        except TypeError as err:
            raise ValueError(f"config: unexpected or missing field ({err})") from err
        check_config(cfg)
        return cfg


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
) -> GenPropConfig:
    shift, scale = pixel_stats
    return GenPropConfig(
        # A plain logit-normal puts ~1 % of training times above t = 0.9, where an I2V model
        # decides a clip's content and the sampler starts; shift 3 (SD3 / Wan) puts ~14 % there.
        timestep_shift=timestep_shift,
        # Off by default (the paper's model); model.net.overrides.content_gate=true turns it on.
        content_gate=content_gate,
        backbone=DiTConfig(dim=dim, depth=depth, heads=heads),
        codec=CodecConfig(patch=codec_patch, shift=shift, scale=scale),
        text=TextConfig(dim=text, max_tokens=16, buckets=4096 if text > 64 else 1024),
        sce_blocks=sce,
        num_frames=frames,
        height=size,
        width=size,
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
    "demo": lambda: _dit_preset(
        dim=128,
        depth=6,
        heads=4,
        sce=3,
        frames=8,
        size=64,
        codec_patch=4,
        text=64,
        pixel_stats=(-0.2, 0.3),
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
