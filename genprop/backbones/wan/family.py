"""Wan2.x through diffusers as a backbone family (``backbone.kind = "wan"``).

Pretrained: the weights, the transformer configs and the whole GenProp config can come from a
local diffusers pipeline folder (``path``), read by :mod:`genprop.backbones.wan.pipeline_folder`;
sharded loading maps its safetensors keys with :mod:`genprop.backbones.wan.weights`. Wan2.2-A14B
is two experts switched at ``boundary_ratio``. Every diffusers import happens inside a function,
so importing the registry stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from genprop.backbones.family import BackboneFamily
from genprop.backbones.wan.config import WanConfig, check_wan_config
from genprop.backbones.wan.parameters import wan_experts, wan_parameter_estimate
from genprop.backbones.wan.weights import rebuild_rope_buffers, wan_weight_sources

if TYPE_CHECKING:
    from genprop.backbones.wan.backbone import WanBackbone

# Wan2.x transformers patch the latent grid 1 x 2 x 2 (published configs' "patch_size"); the
# budgets of a config whose transformer config is still to be read from its folder use it.
WAN_TOKEN_PATCH = 2


def build_wan(
    cfg: WanConfig,
    *,
    text_dim: int,
    latent_channels: int,
    mask_channels: int,
    load_weights: bool = True,
    expert: int = 0,
) -> WanBackbone:
    """:meth:`WanBackbone.build <genprop.backbones.wan.backbone.WanBackbone.build>`: loaded from
    ``cfg.path`` or random from ``cfg.transformer_config`` (``text_dim`` is the transformer's own
    ``text_dim``, checked against the text encoder by the model)."""
    from genprop.backbones.wan.backbone import WanBackbone  # diffusers: only when built

    return WanBackbone.build(
        cfg,
        latent_channels=latent_channels,
        mask_channels=mask_channels,
        load_weights=load_weights,
        expert=expert,
    )


def read_transformer_configs(cfg: WanConfig) -> None:
    """Fill ``cfg``'s unset ``transformer_config`` / ``transformer_2_config`` from the folder's
    ``<subfolder>/config.json``, in place, as ``from_pretrained`` stores them (diffusers'
    defaults filled in, private ``_`` keys dropped), without reading a weight."""
    import torch
    from diffusers import WanTransformer3DModel

    from contracts.jsonfile import read_json_object
    from genprop.backbones.wan.diffusers_config import plain_config

    if cfg.path is None:
        return
    fields = (("transformer_config", cfg.subfolder), ("transformer_2_config", cfg.subfolder_2))
    for field, subfolder in fields:
        if subfolder is None or getattr(cfg, field) is not None:
            continue
        stored = read_json_object(Path(cfg.path) / subfolder / "config.json", what="JSON config")
        with torch.device("meta"):  # the config with diffusers' defaults, as from_pretrained's
            transformer = WanTransformer3DModel.from_config(stored)
        setattr(cfg, field, plain_config(transformer.config))


def _token_patch(cfg: WanConfig) -> int:
    return WAN_TOKEN_PATCH


def _boundary_ratio(cfg: WanConfig) -> float | None:
    return cfg.boundary_ratio


def _pretrained_path(cfg: WanConfig) -> str | None:
    return cfg.path


def read_folder(path: str | Path, **options: Any) -> dict[str, Any]:
    """:func:`~genprop.backbones.wan.pipeline_folder.read_wan_folder` (imported when called: it
    builds the transformers on the meta device with torch and diffusers)."""
    from genprop.backbones.wan.pipeline_folder import read_wan_folder

    return read_wan_folder(path, **options)


WAN = BackboneFamily(
    kind="wan",
    config=WanConfig,
    check=check_wan_config,
    parameters=wan_parameter_estimate,
    token_patch=_token_patch,
    build=build_wan,
    experts=wan_experts,
    boundary_ratio=_boundary_ratio,
    pretrained_path=_pretrained_path,
    read_architecture=read_transformer_configs,
    read_folder=read_folder,
    weight_sources=wan_weight_sources,
    rebuild_buffers=rebuild_rope_buffers,
)
