"""Build the genprop model a run trains: a named preset, or a pretrained folder (a Wan2.x I2V
diffusers folder, read by its backbone family), plus config overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genprop.configs import GenPropConfig, preset
from genprop.modeling.model import GenPropModel
from training.cache.key import check_latent_cache

# ``model.net.overrides`` a pretrained model accepts: the options every family's folder reader
# takes (``GenPropConfig.from_folder``; Wan's: ``genprop.backbones.wan.folder.wan_config``).
PRETRAINED_FIELDS = ("sce_blocks", "num_frames", "height", "width", "timestep_shift")


def _merge(base: dict[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if key not in out:
            raise ValueError(f"{where}: unknown field {key!r} (known: {sorted(out)})")
        if isinstance(value, Mapping) and isinstance(out[key], dict) and out[key]:
            out[key] = _merge(out[key], value, f"{where}.{key}")
        elif isinstance(value, Mapping):  # an open mapping (e.g. sampling.task_guidance)
            out[key] = dict(value)
        else:
            out[key] = value
    return out


def _pretrained_config(pretrained: str, kind: str, overrides: Mapping[str, Any]) -> GenPropConfig:
    """``GenPropConfig.from_folder(pretrained, kind=kind, ...)`` with the overrides as its keyword
    arguments.

    Accepted: the top-level fields in :data:`PRETRAINED_FIELDS` (``None`` keeps the default)
    and ``text: {max_tokens: N}``.
    """
    kwargs: dict[str, Any] = {}
    sampling: Mapping[str, Any] | None = None
    for key, value in overrides.items():
        if key == "sampling" and isinstance(value, Mapping):
            sampling = value
        elif key == "text" and isinstance(value, Mapping) and set(value) <= {"max_tokens"}:
            if value.get("max_tokens") is not None:
                kwargs["text_max_tokens"] = int(value["max_tokens"])
        elif key in PRETRAINED_FIELDS:
            if value is not None:
                kwargs[key] = value
        else:
            raise ValueError(
                f"model.net.overrides: field {key!r} cannot be set with model.net.pretrained "
                f"(known: {[*PRETRAINED_FIELDS, 'text.max_tokens', 'sampling']})"
            )
    cfg = GenPropConfig.from_folder(pretrained, kind=kind, **kwargs)
    if sampling:
        data = cfg.to_dict()
        data["sampling"] = _merge(data["sampling"], sampling, "model.net.overrides.sampling")
        cfg = GenPropConfig.from_dict(data)
    return cfg


def build_config(
    *,
    preset_name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    gradient_checkpointing: bool = False,
    pretrained: str | None = None,
    pretrained_kind: str = "wan",
    latents: str | None = None,
) -> GenPropConfig:
    """The model's :class:`GenPropConfig` (the options of ``model.net``).

    Args:
        preset_name: A ``genprop.configs`` preset; ``None`` with ``pretrained``.
        overrides: Nested dict of config fields applied to the preset; with ``pretrained`` only
            ``sce_blocks``, ``num_frames``, ``height``, ``width``, ``timestep_shift`` and
            ``text.max_tokens`` (checked by the family's folder reader, e.g.
            ``genprop.backbones.wan.folder.wan_config``).
        gradient_checkpointing: Recompute backbone block activations in backward.
        pretrained: A local pretrained folder (a Wan2.x I2V diffusers folder).
        pretrained_kind: The backbone family that reads ``pretrained``
            (``genprop.backbones.registry.FAMILIES``; "wan" by default).
        latents: A ``genprop-cache`` folder (``data.latents``) the model trains from: its encoder
            key is checked against this config.

    Raises:
        ValueError: naming the unknown preset or override field, or when both or neither of
            ``preset_name`` and ``pretrained`` are given.
        training.cache.key.LatentCacheError: naming both keys when the cache was made for other
            encoders or another clip geometry.
    """
    if (preset_name is None) == (pretrained is None):
        raise ValueError(
            "model.net: set exactly one of preset_name (a genprop preset) and pretrained "
            f"(a local Wan2.x I2V diffusers folder); got {preset_name!r} and {pretrained!r}"
        )
    if pretrained is not None:
        cfg = _pretrained_config(str(pretrained), pretrained_kind, overrides or {})
        cfg.backbone.gradient_checkpointing = bool(gradient_checkpointing)
    else:
        data = preset(str(preset_name)).to_dict()
        if overrides:
            data = _merge(data, overrides, "model.net.overrides")
        data["backbone"]["gradient_checkpointing"] = bool(gradient_checkpointing)
        cfg = GenPropConfig.from_dict(data)
    if latents is not None:
        check_latent_cache(latents, cfg)
    return cfg


def build_model(*, train_experts: str = "both", **net: Any) -> GenPropModel:
    """Instantiate a fresh model (Hydra target of ``model.net``; the keyword arguments of
    :func:`build_config`); pretrained weights are loaded from the local ``pretrained`` folder.

    With ``latents`` (a ``genprop-cache`` folder, ``data.latents``) the VAE, text and image
    encoders are not built: training reads their outputs from the cache. ``train_experts``
    (``both``, ``high`` or ``low``): the experts of a two-expert backbone (Wan2.2-I2V-A14B) whose
    SCE and MPD this run trains (:meth:`GenPropModel.set_train_experts`).
    """
    cfg = build_config(**net)
    model = GenPropModel.from_config(cfg, encoders=net.get("latents") is None)
    model.set_train_experts(train_experts)
    return model
