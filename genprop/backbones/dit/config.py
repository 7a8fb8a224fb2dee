"""The tiny DiT's config (``backbone.kind = "dit"``) and the checks of its fields.

:func:`check_dit_config` runs on every config read from a ``config.json`` (through
:func:`genprop.config_checks.check_config`) before anything is allocated, so a NaN width or a zero
patch is one :class:`~genprop.field_checks.ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from genprop.field_checks import BIG, check_bool, check_choice, check_float, check_int, config_error


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
    # Width of a residual convolution block (3x3 conv -> SiLU -> 3x3 conv, last one zero at
    # init) applied to each output latent frame after the linear head (U-ViT's extra convolution
    # after patch decoding, Bao et al. 2023). The linear head decodes each token on its own, so its
    # errors change abruptly at every token border: the seams that show as p x p squares after
    # decoding. The convolution sees across the borders. 0: none (the DiT and Wan heads).
    head_conv: int = 0


def check_dit_config(cfg: DiTConfig) -> None:
    """Check the DiT fields of ``cfg`` (kind and ``gradient_checkpointing`` are checked by
    :func:`genprop.config_checks.check_config` for every family).

    Raises:
        ConfigError: naming the first bad field (``'backbone.dim'``, ``'backbone.patch'``, ...).
    """
    check_int(cfg.dim, "backbone.dim", 1, BIG)
    check_int(cfg.depth, "backbone.depth", 1, 1024)
    check_int(cfg.heads, "backbone.heads", 1, 1024)
    if cfg.dim % cfg.heads:
        raise config_error("backbone.dim", f"a multiple of backbone.heads ({cfg.heads})", cfg.dim)
    check_int(cfg.patch, "backbone.patch", 1, 64)
    check_float(cfg.mlp_ratio, "backbone.mlp_ratio", 0.0, 64.0, low_open=True)
    check_float(cfg.rope_theta, "backbone.rope_theta", 1.0, 1e12)
    check_float(cfg.t_min, "backbone.t_min", 0.0, 1.0, low_open=True)
    check_int(cfg.head_conv, "backbone.head_conv", 0, BIG)
    check_choice(cfg.prediction, "backbone.prediction", ("x0", "velocity"))
    check_bool(cfg.text_cross_attention, "backbone.text_cross_attention")
    check_bool(cfg.first_frame_broadcast, "backbone.first_frame_broadcast")
