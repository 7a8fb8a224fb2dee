"""The Wan2.x backbone's config (``backbone.kind = "wan"``) and the checks of its fields.

The transformer's own architecture lives in ``transformer_config`` (and ``transformer_2_config``
for Wan2.2-A14B's second expert), diffusers' config dicts; their fields are checked where they are
counted (:mod:`genprop.backbones.wan.parameters`) and again by
:func:`genprop.backbones.wan.variants.check_transformer_config` when the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from genprop.field_checks import check_float, check_optional_str, check_subfolder, config_error


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


def transformer_configs(cfg: WanConfig) -> dict[str, Any]:
    """The architecture fields of ``cfg``, ``transformer_config`` first: field name -> config dict
    (or None), one per expert."""
    return {
        name: value
        for name, value in vars(cfg).items()
        if name.startswith("transformer") and name.endswith("config")
    }


def check_wan_config(cfg: WanConfig) -> None:
    """Check the Wan fields of ``cfg``: folder paths, sub-folder names, the expert boundary and
    the type of the transformer configs (kind and ``gradient_checkpointing`` are checked by
    :func:`genprop.config_checks.check_config` for every family).

    Raises:
        ConfigError: naming the first bad field (``'backbone.subfolder'``, ...).
    """
    for name, value in vars(cfg).items():
        if name == "path" or name.endswith("_path"):
            check_optional_str(value, f"backbone.{name}")
        elif name.startswith("subfolder"):
            # Sub-folders are joined to ``path``: an absolute one or ".." would leave the folder.
            check_subfolder(value, f"backbone.{name}")
    if cfg.boundary_ratio is not None:  # Wan2.2-A14B's expert switch time
        check_float(cfg.boundary_ratio, "backbone.boundary_ratio", 0.0, 1.0)
    for name, value in transformer_configs(cfg).items():
        if value is not None and not isinstance(value, dict):
            raise config_error(f"backbone.{name}", "null or an object", value)
