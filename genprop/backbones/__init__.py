"""I2V backbones behind one interface (:class:`~genprop.backbones.base.Backbone`), one family per
folder (``dit/``, ``wan/``), listed in :mod:`genprop.backbones.registry`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genprop.backbones.base import Backbone, Conditioning
from genprop.backbones.dit.model import TinyDiT
from genprop.backbones.registry import family_of

if TYPE_CHECKING:
    from genprop.configs import GenPropConfig


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
        load_weights: Pretrained families (Wan): load the weights from the backbone's folder.
        expert: Two-expert families (Wan2.2-A14B): 0 = the high-noise transformer, 1 = the
            low-noise one.
    """
    return family_of(cfg.backbone).build(
        cfg.backbone,
        text_dim=cfg.text.dim,
        latent_channels=latent_channels,
        mask_channels=mask_channels,
        load_weights=load_weights,
        expert=expert,
    )


__all__ = ["Backbone", "Conditioning", "TinyDiT", "build_backbone"]
