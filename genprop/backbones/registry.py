"""The backbone families GenProp knows, one line each, and the look-ups every caller uses.

``config.json``'s ``backbone.kind`` names the family; :func:`family_of` gives the record of a
config's backbone, so no code outside ``genprop/backbones/<kind>/`` tests a config's class. A new
family is a folder with its pieces (``docs/adding_a_backbone.md``) and one line in
:data:`FAMILIES`.

Importing this module is cheap (no torch, no diffusers): :mod:`genprop.configs` imports it to
pick a config class by kind, and each family imports its heavy modules only when it builds.
"""

from __future__ import annotations

from typing import Any

from genprop.backbones.dit.family import DIT
from genprop.backbones.family import BackboneFamily
from genprop.backbones.wan.family import WAN

FAMILIES: dict[str, BackboneFamily] = {
    "dit": DIT,  # our tiny latent-video DiT, trained from scratch
    "wan": WAN,  # Wan2.1-I2V, Wan2.2-I2V-A14B, Wan2.2-TI2V through diffusers
}


def kind_choices() -> str:
    """The registered kinds for a message: ``'dit' or 'wan'`` (``'a', 'b' or 'c'`` for three)."""
    kinds = [repr(kind) for kind in FAMILIES]
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"


def get_family(kind: Any) -> BackboneFamily:
    """The family registered under ``kind``.

    Raises:
        ValueError: If no family has that kind, listing the registered ones.
    """
    family = FAMILIES.get(kind) if isinstance(kind, str) else None
    if family is None:
        raise ValueError(f"config.backbone.kind: expected {kind_choices()}, got {kind!r}")
    return family


def family_of(backbone: Any) -> BackboneFamily:
    """The family of a backbone config (``GenPropConfig.backbone``), by its ``kind``.

    Raises:
        ValueError: If its kind is not registered.
    """
    return get_family(getattr(backbone, "kind", None))
