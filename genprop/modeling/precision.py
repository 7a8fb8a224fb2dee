"""Which weights of a GenProp model keep fp32 under a low-precision dtype, and the cast.

The pretrained backbone says what it keeps in fp32 (a Wan transformer: diffusers' own
``_keep_in_fp32_modules`` — time embedder, modulation tables, norms;
:meth:`~genprop.backbones.base.Backbone.keeps_fp32`); the SCE and MPD copies of those weights
follow their source. Sharded training (:mod:`genprop.scale.sharding`) and bf16 inference
(:mod:`genprop.inference.placement`) both read it from here.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

from genprop.backbones.base import Backbone
from genprop.modeling.weight_names import backbone_copy_sources

M = TypeVar("M", bound=nn.Module)


def fp32_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters kept in fp32 under a bf16 policy: those the backbone's pretrained
    model keeps in fp32 (:meth:`~genprop.backbones.base.Backbone.keeps_fp32`, from diffusers'
    ``_keep_in_fp32_modules``), and the SCE / MPD copies of them (a copied block computes as its
    source does). None for the tiny DiT, whose parameters all follow the policy.

    Args:
        model: A :class:`GenPropModel` or a bare backbone (any device; not yet sharded).
    """
    if isinstance(model, Backbone):
        return {n for n, _ in model.named_parameters() if model.keeps_fp32(n)}
    if not hasattr(model, "expert_2"):  # neither a backbone nor a GenProp model
        return set()
    backbones = {"backbone.": model.backbone}
    if model.expert_2 is not None:
        backbones["expert_2.backbone."] = model.expert_2.backbone
    copies = backbone_copy_sources(model)
    names = set()
    for name, _ in model.named_parameters():
        source = copies.get(name, name)
        for prefix, backbone in backbones.items():
            if source.startswith(prefix) and backbone.keeps_fp32(source.removeprefix(prefix)):
                names.add(name)
    return names


@torch.no_grad()
def cast_model(model: M, dtype: torch.dtype) -> M:
    """Cast ``model``'s floating parameters to ``dtype`` in place, keeping in fp32 those the
    pretrained backbone keeps in fp32 (:func:`fp32_parameter_names`). fp32 casts everything back."""
    keep = fp32_parameter_names(model) if dtype != torch.float32 else set()
    for name, param in model.named_parameters():
        if param.is_floating_point():
            param.data = param.data.to(torch.float32 if name in keep else dtype)
    return model
