"""The tiny DiT's parameter count: one formula, from its config alone.

Both the config budget (:func:`genprop.config_checks.estimate_parameters`, through the family's
``parameters``) and the per-component report (:func:`genprop.scale.flops.count_parameters`) read
these functions, so the two never drift apart; ``tests/genprop/test_backbone_registry.py`` checks
them against ``sum(p.numel())`` of built models. They mirror
:class:`~genprop.backbones.dit.model.TinyDiT` layer by layer (norms without affine weights have no
parameters; the qk-RMSNorms have one weight vector of the head width each).
"""

from __future__ import annotations

from dataclasses import dataclass

from genprop.backbones.dit.config import DiTConfig
from genprop.backbones.family import ParameterEstimate


@dataclass(frozen=True)
class DiTSizes:
    """The widths a tiny DiT's parameter and FLOP counts read.

    Attributes:
        d: Token width. hidden: MLP width. head: Head width (d / heads).
        cin: Input channels of the patch embedding (2C + mask channels).
        c: Latent channels C. p: Spatial token patch. text: Text embedding width.
        ca: Whether blocks have text cross-attention. depth: Blocks.
        conv: Width of the head's residual convolution (0: none).
    """

    d: int
    hidden: int
    head: int
    cin: int
    c: int
    p: int
    text: int
    ca: bool
    depth: int
    conv: int = 0

    @classmethod
    def of(
        cls, cfg: DiTConfig, *, latent_channels: int, mask_channels: int, text_dim: int
    ) -> DiTSizes:
        """The sizes of ``cfg`` on a codec of ``latent_channels`` / ``mask_channels``.

        Raises:
            ValueError: If ``cfg`` is not a tiny-DiT config (the counts are this family's).
        """
        if not isinstance(cfg, DiTConfig):
            raise ValueError(
                f"analytic counts cover the tiny DiT backbone only (backbone.kind {cfg.kind!r})"
            )
        return cls(
            d=cfg.dim,
            hidden=int(cfg.dim * cfg.mlp_ratio),
            head=cfg.dim // cfg.heads,
            cin=2 * latent_channels + mask_channels,
            c=latent_channels,
            p=cfg.patch,
            text=text_dim,
            ca=cfg.text_cross_attention,
            depth=cfg.depth,
            conv=cfg.head_conv,
        )


def linear(fan_in: int, fan_out: int) -> int:
    """Parameters of ``nn.Linear(fan_in, fan_out)`` (weight + bias)."""
    return fan_in * fan_out + fan_out


def block_parameters(s: DiTSizes) -> int:
    """One ``DiTBlock``: qkv, qk-norms, attention out, MLP, AdaLN modulation (+ cross-attention)."""
    d = s.d
    n = linear(d, 3 * d) + 2 * s.head + linear(d, d) + linear(d, s.hidden) + linear(s.hidden, d)
    n += linear(d, 6 * d)
    if s.ca:  # affine LayerNorm, query, key/value, output
        n += 2 * d + linear(d, d) + linear(d, 2 * d) + linear(d, d)
    return n


def patch_embed_parameters(s: DiTSizes) -> int:
    """The patch embedding: one linear map of each p x p cell of the I2V input."""
    return linear(s.cin * s.p * s.p, s.d)


def backbone_parameters(s: DiTSizes) -> int:
    """The whole ``TinyDiT``: patch embedding, timestep MLP, blocks, text projection, head."""
    d = s.d
    n = patch_embed_parameters(s) + linear(256, d) + linear(d, d) + s.depth * block_parameters(s)
    if s.ca:  # the text projection exists only for the cross-attention that reads it
        n += linear(s.text, d) + linear(d, d)
    return n + linear(d, 2 * d) + linear(d, s.p * s.p * s.c) + head_conv_parameters(s)


def head_conv_parameters(s: DiTSizes) -> int:
    """The head's residual convolution: 3x3 conv C -> conv, 3x3 conv conv -> C (0 without one)."""
    return 9 * s.c * s.conv + s.conv + 9 * s.conv * s.c + s.c if s.conv else 0


def dit_parameter_estimate(
    cfg: DiTConfig, *, latent_channels: int, mask_channels: int, text_dim: int
) -> ParameterEstimate:
    """The family's ``parameters``: exact counts of the backbone and of one block."""
    s = DiTSizes.of(
        cfg, latent_channels=latent_channels, mask_channels=mask_channels, text_dim=text_dim
    )
    return ParameterEstimate(
        total=backbone_parameters(s), block=block_parameters(s), depth=s.depth, width=s.d
    )
