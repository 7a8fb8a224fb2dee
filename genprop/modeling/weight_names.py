"""Names of a GenProp model's weights that do not come from its own training: the copies of
backbone weights and the zero-initialised layers.

The Selective Content Encoder and the Mask Prediction Decoder start as *copies* of backbone pieces
(:func:`copied_backbone_name`): SCE patch embedding <- the backbone's, SCE block i <- backbone
block i, MPD block <- the backbone's last block. Loaders that initialise a model from files
holding only a backbone (a pretrained pipeline folder, a stage-1 export) read each copy from the
stored backbone tensor it copies, so the copies start from the checkpoint's own precision even
when the frozen backbone is stored in bf16. GenProp's own layers start as at construction;
:data:`ZERO_INIT` are zeroed so that at initialisation GenProp equals the backbone.

These names are the same for every backbone family (they name GenProp's modules, not the
backbone's); a family's own key map (e.g. :mod:`genprop.backbones.wan.weights`) builds on them.
"""

from __future__ import annotations

import re
from typing import Any

EXPERT_2 = "expert_2."  # state-dict prefix of a two-expert model's second expert
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
