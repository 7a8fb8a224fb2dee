"""Where each weight of a GenProp model on a Wan backbone lives in a Wan diffusers pipeline folder.

A pipeline folder stores each transformer as diffusers wrote it: ``transformer/`` (and
``transformer_2/``, Wan2.2-A14B's low-noise expert) with ``diffusion_pytorch_model.safetensors``
or ``diffusion_pytorch_model-0000k-of-0000n.safetensors`` + ``*.safetensors.index.json``, keyed
by ``WanTransformer3DModel``'s own state-dict names. GenProp's names differ in two ways:

* :class:`~genprop.backbones.wan.backbone.WanBackbone` registers the transformer's pieces under its
own
  attribute names (:data:`BACKBONE_TO_DIFFUSERS`, the one rename being the patch embedding, which
  sits inside :class:`~genprop.backbones.wan.backbone.WanPatchEmbed`);
* the Selective Content Encoder and the Mask Prediction Decoder are *copies* of backbone pieces
  (:func:`copied_backbone_name`): SCE patch embedding <- the backbone's, SCE block i <- backbone
  block i, MPD block <- the backbone's last block. They read the same stored tensors, so they
  start from the checkpoint's own precision even when the frozen backbone is stored in bf16.

Everything else of GenProp (the SCE's fusion layer and injection MLPs, the MPD head, the task
embedding, the content gate) is initialised as at construction (:data:`ZERO_INIT` are zeroed).
"""

from __future__ import annotations

import re
from typing import Any

from genprop.configs import WanConfig

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
EXPERT_2 = "expert_2."
# Parameters GenProp zero-initialises so that at initialisation GenProp equals the backbone.
ZERO_INIT = re.compile(
    r"^(expert_2\.)?content_encoder\.(fusion\.|injections\.\d+\.net\.2\.)"
    r"|^task_embedding\."
    r"|^content_gate\.(strength$|head\.2\.)"
)
_SCE_EMBED = re.compile(r"^content_encoder\.embed\.(.+)$")
_SCE_BLOCK = re.compile(r"^content_encoder\.blocks\.(\d+)\.(.+)$")
_MPD_BLOCK = re.compile(r"^mask_decoder\.block\.(.+)$")


def copied_backbone_name(name: str, depth: int) -> str | None:
    """The backbone parameter an SCE / MPD copy is initialised from (one expert's names).

    Args:
        name: A state-dict name relative to the expert (``content_encoder.blocks.0.ffn...``).
        depth: The expert's number of backbone blocks (the MPD copies the last).

    Returns:
        ``backbone.<...>``, or ``None`` when ``name`` is not a copy of a backbone weight.
    """
    if match := _SCE_EMBED.match(name):
        return f"backbone.patch_embedder.{match[1]}"
    if match := _SCE_BLOCK.match(name):
        return f"backbone.blocks.{match[1]}.{match[2]}"
    if match := _MPD_BLOCK.match(name):
        return f"backbone.blocks.{depth - 1}.{match[1]}"
    return None


def diffusers_name(backbone_name: str) -> str | None:
    """A :class:`WanBackbone` state-dict name -> ``WanTransformer3DModel``'s (``None``: not a
    stored weight)."""
    for ours, theirs in BACKBONE_TO_DIFFUSERS.items():
        if backbone_name == ours or backbone_name.startswith(ours + "."):
            return theirs + backbone_name[len(ours) :]
    return None


def backbone_copy_sources(model: Any) -> dict[str, str]:
    """SCE / MPD state-dict name -> the backbone state-dict name it is a copy of, for every copy
    in ``model`` (a :class:`~genprop.modeling.model.GenPropModel`, both experts of a two-expert
    one)."""
    depths = {"": model.backbone.num_blocks}
    if getattr(model, "expert_2", None) is not None:
        depths[EXPERT_2] = model.expert_2.backbone.num_blocks
    sources = {}
    for name in model.state_dict():
        prefix = EXPERT_2 if name.startswith(EXPERT_2) else ""
        source = copied_backbone_name(name[len(prefix) :], depths[prefix])
        if source is not None:
            sources[name] = prefix + source
    return sources


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
