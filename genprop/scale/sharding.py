"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``) plan of a GenProp
model, in plain PyTorch.

Units (each all-gathered just before it runs and freed after, so a rank holds one unit in full
at a time besides its shards):

* every backbone transformer block (frozen in stage 2: stored in bf16, never in the optimizer);
* every SCE block together with its zero-initialised injection MLP (trainable, fp32 master);
* the MPD (its block copy, norm and head);
* the root, which keeps what is left: the backbone's embeddings and output head (frozen), the
  SCE's patch embedding and fusion layer, the task embedding and the content gate (trainable).

FSDP2 shards each parameter on its own (no flat parameters), so frozen and trainable tensors
never share storage; only the root mixes the two kinds, which is small. Trainable parameters
stay fp32 (master weights, optimizer and EMA in fp32); blocks compute in bf16 with fp32
gradient reduction (:func:`mixed_precision`). The codec and the text encoder are not sharded
(they run outside the model's forward, under ``no_grad``): they are replicated on each rank,
stored in the frozen dtype.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from genprop.modeling.model import GenPropModel


def mixed_precision(compute_dtype: torch.dtype | None = torch.bfloat16) -> MixedPrecisionPolicy:
    """Parameters all-gathered and used in ``compute_dtype``, gradients reduced in fp32.

    ``None`` computes in each parameter's own dtype (fp32 trainable, ``frozen_dtype`` frozen).
    """
    return MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)


def shard_units(model: GenPropModel) -> list[list[nn.Module]]:
    """The FSDP units below the root, in forward order (each a list of modules sharded as one).

    A two-expert model (``model.expert_2``) repeats the plan for the second expert's backbone,
    SCE and MPD; the expert a step does not route to simply stays sharded.

    Args:
        model: The GenProp model (not yet sharded).

    Returns:
        ``[[backbone block 0], ..., [SCE block k, injection k], ..., [MPD modules]]`` per expert.
    """
    experts = [model]
    if getattr(model, "expert_2", None) is not None:
        experts.append(model.expert_2)
    units: list[list[nn.Module]] = []
    for expert in experts:
        sce, mpd = expert.content_encoder, expert.mask_decoder
        units += [[block] for block in expert.backbone.blocks]
        units += [[b, inj] for b, inj in zip(sce.blocks, sce.injections, strict=True)]
        units.append([mpd.block, mpd.norm, mpd.head])
    return units


@torch.no_grad()
def cast_frozen_(module: nn.Module, dtype: torch.dtype) -> int:
    """Store every parameter with ``requires_grad=False`` in ``dtype`` (buffers stay as they are).

    Works on the meta device too (nothing is allocated there).

    Returns:
        The number of parameters cast.
    """
    count = 0
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and not param.requires_grad and param.dtype != dtype:
                sub._parameters[name] = nn.Parameter(param.to(dtype), requires_grad=False)
                count += 1
    return count


def shard_model(
    model: GenPropModel,
    mesh: DeviceMesh,
    *,
    mp_policy: MixedPrecisionPolicy | None = None,
    frozen_dtype: torch.dtype | None = torch.bfloat16,
    reshard_after_forward: bool = True,
) -> GenPropModel:
    """Apply the sharding plan in place (see module docstring).

    Call after setting ``requires_grad`` (frozen vs trainable) and before building the optimizer;
    the model may still be on the meta device (then materialise it with
    :func:`genprop.scale.sharded_weights.materialize_`).

    Args:
        model: The GenProp model; its parameters become DTensors sharded on dim 0 over ``mesh``.
        mesh: 1-D data-parallel device mesh.
        mp_policy: Mixed precision of the units; default :func:`mixed_precision` (bf16 compute).
        frozen_dtype: Storage dtype of frozen parameters (codec and text encoder included);
            ``None`` keeps them as they are.
        reshard_after_forward: Free each unit's gathered parameters after its forward (ZeRO-3;
            gathered again in backward). ``False`` keeps them until backward (ZeRO-2 memory,
            fewer all-gathers). The root is never resharded after forward.

    Returns:
        ``model`` (now an ``FSDPModule``).

    Raises:
        ValueError: If the model is already sharded.
    """
    if isinstance(model, FSDPModule):
        raise ValueError("shard_model: the model is already sharded")
    policy = mixed_precision() if mp_policy is None else mp_policy
    if frozen_dtype is not None:
        cast_frozen_(model, frozen_dtype)
    for unit in shard_units(model):
        fully_shard(
            unit if len(unit) > 1 else unit[0],
            mesh=mesh,
            mp_policy=policy,
            reshard_after_forward=reshard_after_forward,
        )
    # The frozen encoders run outside the model's forward (GenPropModel.encode_prompts, ...):
    # kept out of the root unit, they stay plain replicated tensors.
    encoders = [getattr(model, n, None) for n in ("codec", "text_encoder", "image_encoder")]
    ignored = {p for enc in encoders if enc is not None for p in enc.parameters()}
    fully_shard(
        model, mesh=mesh, mp_policy=policy, reshard_after_forward=False, ignored_params=ignored
    )
    return model


def checkpoint_blocks(model: GenPropModel) -> None:
    """Recompute activations in backward for every block-sized step of the model.

    Covers the backbone blocks, each SCE block together with its injection MLP, the MPD block
    (all through ``Backbone.apply_block`` / ``SelectiveContentEncoder``) and the L_grad pass
    (the perturbed SCE forward of ``genprop.losses``), which are all keyed on the backbone's
    ``gradient_checkpointing`` flag: set on both experts of a two-expert backbone.
    """
    model.backbone.gradient_checkpointing = True
    if model.expert_2 is not None:
        model.expert_2.backbone.gradient_checkpointing = True


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` went through :func:`shard_model` (or any ``fully_shard``)."""
    return isinstance(model, FSDPModule)
