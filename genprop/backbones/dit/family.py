"""The tiny DiT as a backbone family (``backbone.kind = "dit"``): trained from scratch, so it has
no pretrained folder, no weight-key map and one expert."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genprop.backbones.dit.config import DiTConfig, check_dit_config
from genprop.backbones.dit.parameters import dit_parameter_estimate
from genprop.backbones.family import BackboneFamily

if TYPE_CHECKING:
    from genprop.backbones.dit.model import TinyDiT


def build_dit(
    cfg: DiTConfig,
    *,
    text_dim: int,
    latent_channels: int,
    mask_channels: int,
    load_weights: bool = True,
    expert: int = 0,
) -> TinyDiT:
    """A randomly initialised :class:`~genprop.backbones.dit.model.TinyDiT` (``load_weights``
    and ``expert`` do not apply: its weights come from a GenProp save folder, loaded by the
    model, and it is one expert)."""
    from genprop.backbones.dit.model import TinyDiT  # torch: only when a model is built

    return TinyDiT(
        cfg, latent_channels=latent_channels, mask_channels=mask_channels, text_dim=text_dim
    )


def _token_patch(cfg: DiTConfig) -> int:
    return cfg.patch


DIT = BackboneFamily(
    kind="dit",
    config=DiTConfig,
    check=check_dit_config,
    parameters=dit_parameter_estimate,
    token_patch=_token_patch,
    build=build_dit,
)
