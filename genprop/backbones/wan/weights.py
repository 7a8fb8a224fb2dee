"""Where each weight of a GenProp model on a Wan backbone lives in a Wan diffusers pipeline folder.

A pipeline folder stores each transformer as diffusers wrote it: ``transformer/`` (and
``transformer_2/``, Wan2.2-A14B's low-noise expert) with ``diffusion_pytorch_model.safetensors``
or ``diffusion_pytorch_model-0000k-of-0000n.safetensors`` + ``*.safetensors.index.json``, keyed
by ``WanTransformer3DModel``'s own state-dict names. GenProp's names differ in two ways:

* :class:`~genprop.backbones.wan.backbone.WanBackbone` registers the transformer's pieces under
  its own attribute names (:data:`BACKBONE_TO_DIFFUSERS`, the one rename being the patch
  embedding, which sits inside :class:`~genprop.backbones.wan.backbone.WanPatchEmbed`);
* the Selective Content Encoder and the Mask Prediction Decoder are *copies* of backbone pieces
  (:mod:`genprop.modeling.weight_names`, the same for every family): they read the stored tensors
  of the
  backbone weights they copy.

Everything else of GenProp (the SCE's fusion layer and injection MLPs, the MPD head, the task
embedding, the content gate) is initialised as at construction (:data:`ZERO_INIT` are zeroed).
:func:`rebuild_rope_buffers` recomputes the one non-persistent buffer of a Wan transformer (its
RoPE tables) after a meta-device build.
"""

from __future__ import annotations

from typing import Any

from genprop.backbones.wan.config import WanConfig
from genprop.modeling.weight_names import (
    EXPERT_2,
    ZERO_INIT,
    backbone_copy_sources,
    copied_backbone_name,
)

__all__ = [
    "BACKBONE_TO_DIFFUSERS",
    "EXPERT_2",
    "ZERO_INIT",
    "backbone_copy_sources",
    "copied_backbone_name",
    "diffusers_name",
    "rebuild_rope_buffers",
    "wan_weight_sources",
]

# WanBackbone attribute -> WanTransformer3DModel attribute (see WanBackbone.__init__). The RoPE
# tables (``rope``) are non-persistent buffers, recomputed rather than stored.
BACKBONE_TO_DIFFUSERS = {
    "patch_embedder.conv": "patch_embedding",
    "condition_embedder": "condition_embedder",
    "blocks": "blocks",
    "norm_out": "norm_out",
    "proj_out": "proj_out",
    "scale_shift_table": "scale_shift_table",
}


def diffusers_name(backbone_name: str) -> str | None:
    """A :class:`WanBackbone` state-dict name -> ``WanTransformer3DModel``'s (``None``: not a
    stored weight)."""
    for ours, theirs in BACKBONE_TO_DIFFUSERS.items():
        if backbone_name == ours or backbone_name.startswith(ours + "."):
            return theirs + backbone_name[len(ours) :]
    return None


def wan_weight_sources(model: Any) -> dict[str, tuple[str, str]]:
    """For every state-dict entry of ``model`` stored in its Wan pipeline folder: the
    transformer subfolder and the diffusers key it is read from.

    Covers the backbone(s) and the SCE / MPD copies of both experts; GenProp's own layers, the
    codec and the encoders are absent (they do not come from the transformer files).

    Args:
        model: A :class:`~genprop.modeling.model.GenPropModel` whose ``config.backbone`` is a
            :class:`WanConfig` (any device, meta included).

    Raises:
        ValueError: If the model's backbone is not a Wan transformer.
    """
    cfg = model.config.backbone
    if not isinstance(cfg, WanConfig):
        raise ValueError(
            f"config.backbone.kind: {cfg.kind!r}, weights from a Wan pipeline folder need 'wan'"
        )
    subfolders = {"": cfg.subfolder, EXPERT_2: cfg.subfolder_2}
    copies = backbone_copy_sources(model)
    sources: dict[str, tuple[str, str]] = {}
    for name in model.state_dict():
        source = copies.get(name, name)
        prefix = EXPERT_2 if source.startswith(EXPERT_2) else ""
        local = source[len(prefix) :]
        if not local.startswith("backbone."):
            continue
        key = diffusers_name(local.removeprefix("backbone."))
        if key is not None:
            sources[name] = (str(subfolders[prefix]), key)
    return sources


def rebuild_rope_buffers(module: Any) -> bool:
    """Recompute a diffusers ``WanRotaryPosEmbed``'s tables (non-persistent buffers, in no weights
    file) after a meta-device build and ``to_empty``; False for any other module."""
    if type(module).__name__ != "WanRotaryPosEmbed":
        return False
    fresh = type(module)(module.attention_head_dim, module.patch_size, module.max_seq_len)
    for name, buf in fresh.named_buffers(recurse=False):
        getattr(module, name).copy_(buf)
    return True
