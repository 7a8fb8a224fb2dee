"""Build the genprop model a run trains, from a named preset plus config overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genprop.configs import GenPropConfig, preset
from genprop.model import GenPropModel


def _merge(base: dict[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if key not in out:
            raise ValueError(f"{where}: unknown field {key!r} (known: {sorted(out)})")
        if isinstance(value, Mapping) and isinstance(out[key], dict):
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def build_config(
    *,
    preset_name: str,
    overrides: Mapping[str, Any] | None = None,
    gradient_checkpointing: bool = False,
) -> GenPropConfig:
    """A preset's :class:`GenPropConfig` with ``overrides`` (nested dict of its fields) applied.

    Raises:
        ValueError: naming the unknown preset or override field.
    """
    data = preset(preset_name).to_dict()
    if overrides:
        data = _merge(data, overrides, "model.net.overrides")
    data["backbone"]["gradient_checkpointing"] = bool(gradient_checkpointing)
    return GenPropConfig.from_dict(data)


def build_model(
    *,
    preset_name: str,
    overrides: Mapping[str, Any] | None = None,
    gradient_checkpointing: bool = False,
) -> GenPropModel:
    """Instantiate a fresh model (Hydra target of ``model.net``)."""
    cfg = build_config(
        preset_name=preset_name,
        overrides=overrides,
        gradient_checkpointing=gradient_checkpointing,
    )
    return GenPropModel.from_config(cfg)
