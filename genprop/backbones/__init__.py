"""I2V backbones behind one interface (:class:`~genprop.backbones.base.Backbone`)."""

from __future__ import annotations

from genprop.backbones.base import Backbone, Conditioning
from genprop.backbones.dit.model import TinyDiT
from genprop.configs import DiTConfig, GenPropConfig


def build_backbone(
    cfg: GenPropConfig,
    *,
    latent_channels: int,
    mask_channels: int,
    load_weights: bool = True,
    expert: int = 0,
) -> Backbone:
    """Build the backbone of ``cfg`` for a codec with the given latent/mask channel counts.

    Args:
        cfg: The whole model config (backbone + text dims).
        latent_channels: The codec's latent channels C.
        mask_channels: Channels of the given-frames mask (the codec's temporal factor).
        load_weights: Wan only: load the pretrained weights from ``cfg.backbone.path``.
        expert: Wan only: 0 = ``transformer``, 1 = the low-noise expert ``transformer_2``.
    """
    if isinstance(cfg.backbone, DiTConfig):
        return TinyDiT(
            cfg.backbone,
            latent_channels=latent_channels,
            mask_channels=mask_channels,
            text_dim=cfg.text.dim,
        )
    from genprop.backbones.wan.backbone import WanBackbone

    return WanBackbone.build(
        cfg.backbone,
        latent_channels=latent_channels,
        mask_channels=mask_channels,
        load_weights=load_weights,
        expert=expert,
    )


__all__ = ["Backbone", "Conditioning", "TinyDiT", "build_backbone"]
