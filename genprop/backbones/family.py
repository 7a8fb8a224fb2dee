"""What a backbone family gives GenProp: the :class:`BackboneFamily` record.

A family is one kind of image-to-video transformer (``"dit"``: our tiny DiT; ``"wan"``: Wan2.x
through diffusers). Its folder ``genprop/backbones/<kind>/`` owns every piece of it: the config
dataclass (``kind`` is its ``config.json`` tag), the checks of that config, the analytic parameter
estimate, the module that implements :class:`~genprop.backbones.base.Backbone`, and, for
pretrained families, the reading of a pipeline folder and the map of its weight keys. The
family's ``family.py`` puts them into one :class:`BackboneFamily`, and
:data:`genprop.backbones.registry.FAMILIES` lists the families, one line each. Every place that
depends on the kind of backbone (config loading and checks, building, experts, sharded loading,
planning, training) asks the registry instead of testing the config's class.

The record holds functions rather than being a class to subclass so that it stays cheap:
:mod:`genprop.configs` imports the registry, and a family's heavy modules (torch, diffusers) are
imported inside its ``build`` / ``read_folder`` functions only when called. A recipe for a new
family: ``docs/adding_a_backbone.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from genprop.backbones.base import Backbone


class BackboneConfig(Protocol):
    """What every family's config dataclass has (``GenPropConfig.backbone`` is one of them)."""

    kind: str  # the family's tag in config.json ("dit", "wan", ...)
    gradient_checkpointing: bool  # recompute block activations in backward


@dataclass(frozen=True)
class ParameterEstimate:
    """Parameter counts of a backbone, computed from its config without building it.

    Attributes:
        total: The whole backbone (every expert's transformer).
        block: One transformer block (the SCE copies ``sce_blocks`` of them, the MPD one).
        depth: Blocks per expert; 0 when the config does not say yet (a Wan config whose
            ``transformer_config`` is read from its folder when the model is built).
        width: The token width D (injection MLPs, MPD and content-gate heads are D x D).
    """

    total: int
    block: int
    depth: int
    width: int


def _one_expert(cfg: Any) -> int:
    return 1


def _no_boundary(cfg: Any) -> float | None:
    return None


def _no_path(cfg: Any) -> str | None:
    return None


def _nothing_to_read(cfg: Any) -> None:
    return None


def _no_buffers(module: Any) -> bool:
    return False


@dataclass(frozen=True)
class BackboneFamily:
    """One backbone family: its config class and the functions GenProp calls on its configs.

    Required:
        kind: The ``backbone.kind`` tag in ``config.json``; equals ``config().kind``.
        config: The config dataclass; every field has a default (``from_dict`` fills the rest).
        check: ``check(cfg)`` raises :class:`~genprop.field_checks.ConfigError` naming the first
            bad field (``'backbone.dim'``) of a config read from untrusted JSON.
        parameters: ``parameters(cfg, *, latent_channels, mask_channels, text_dim)`` ->
            :class:`ParameterEstimate`; may also raise ``ConfigError`` for fields it reads.
        token_patch: ``token_patch(cfg)`` -> the spatial patch of a token on the latent grid
            (tokens per clip and the MPD / content-gate head sizes follow from it).
        build: ``build(cfg, *, text_dim, latent_channels, mask_channels, load_weights, expert)``
            -> the :class:`~genprop.backbones.base.Backbone` module; imports its heavy modules
            inside. ``expert`` is 0, or 1 for the second expert when ``experts(cfg) == 2``.

    Optional (the defaults describe a from-scratch, single-expert backbone):
        experts: ``experts(cfg)`` -> transformers in the backbone, each with its own SCE and MPD.
        boundary_ratio: ``boundary_ratio(cfg)`` -> the flow time where a two-expert backbone
            switches from expert 0 (t >= ratio) to expert 1, or None for one expert.
        pretrained_path: ``pretrained_path(cfg)`` -> the local folder its weights are read from,
            or None (random init, or weights from a GenProp save folder).
        read_architecture: ``read_architecture(cfg)`` fills, in place, the architecture fields
            that a pretrained folder holds (no weight read), so a meta-device build or a plan
            needs no weights.
        read_folder: ``read_folder(path, *, sce_blocks, num_frames, height, width,
            text_max_tokens, timestep_shift, **family_options)`` -> the checked fields of a
            whole ``GenPropConfig`` in ``config.json`` form (``GenPropConfig.from_folder``);
            None when the family has no pretrained folders.
        weight_sources: ``weight_sources(model)`` -> for every state-dict name of a
            ``GenPropModel`` that its pipeline folder stores: ``(subfolder, key)`` in the
            folder's safetensors files (sharded loading); None without pretrained folders.
        rebuild_buffers: ``rebuild_buffers(module)`` -> recompute a module's non-persistent
            buffers after a meta-device build and ``to_empty``; False if it is not the family's.
    """

    kind: str
    config: type
    check: Callable[[Any], None]
    parameters: Callable[..., ParameterEstimate]
    token_patch: Callable[[Any], int]
    build: Callable[..., Backbone]
    experts: Callable[[Any], int] = _one_expert
    boundary_ratio: Callable[[Any], float | None] = _no_boundary
    pretrained_path: Callable[[Any], str | None] = _no_path
    read_architecture: Callable[[Any], None] = _nothing_to_read
    read_folder: Callable[..., dict[str, Any]] | None = None
    weight_sources: Callable[[Any], dict[str, tuple[str, str]]] | None = None
    rebuild_buffers: Callable[[Any], bool] = _no_buffers
