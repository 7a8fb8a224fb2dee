"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``) plan of a GenProp
model, in plain PyTorch.

Units (each all-gathered just before it runs and freed after, so a rank holds one unit in full
at a time besides its shards):

* every backbone transformer block (frozen in stage 2: stored in bf16, never in the optimizer);
* every SCE block together with its zero-initialised injection MLP (trainable, fp32 master);
* the MPD (its block copy, norm and head);
* the root, which keeps what is left: the backbone's embeddings and output head (frozen), the
  SCE's patch embedding and fusion layer, the task embedding and the content gate (trainable).

FSDP2 shards each parameter on its own (no flat parameters), so frozen and trainable tensors never
share storage; only the root (split in two for Wan, below) mixes the two kinds, which is small.
Trainable parameters stay fp32 (master weights, optimizer and EMA in fp32); blocks compute in bf16
with fp32 gradient reduction (:func:`mixed_precision`). The codec and the text encoder are not
sharded (they run outside the model's forward, under ``no_grad``): they are replicated on each
rank, stored in the frozen dtype.

What the pretrained model keeps in fp32 stays fp32 (:func:`fp32_parameter_names`): a Wan
transformer loaded by diffusers in bf16 keeps its ``_keep_in_fp32_modules`` (time embedder,
``scale_shift_table`` modulation tables, affine norms; RoPE tables are buffers, which FSDP never
casts) in fp32, and its blocks upcast around them. FSDP2 all-gathers every parameter of a unit in
the unit's ``param_dtype``, so a unit holding such parameters is split in two
(:func:`_shard_unit`): its children free of them form a bf16 unit of their own (a block's attention
and FFN; at the root the embeddings, projections, output head and GenProp's own layers, gathered,
like the root, until backward), and the unit itself is sharded with ``param_dtype=None``, each
remaining parameter computing in its stored dtype (fp32: they are never cast to the frozen dtype,
and trainable ones are fp32 masters). Both halves are FSDP units, so trainable copies (the SCE's
and MPD's blocks) still have every gradient reduced across ranks. No unit casts its forward inputs:
the flow time must reach the time embedding in fp32 and the RoPE tables the blocks in fp32, as in
diffusers; the backbones cast their inputs where the bf16 layers start (their patch embeddings,
text and image projections).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from genprop.modeling.model import GenPropModel
from genprop.modeling.precision import fp32_parameter_names


def mixed_precision(compute_dtype: torch.dtype | None = torch.bfloat16) -> MixedPrecisionPolicy:
    """Parameters all-gathered and used in ``compute_dtype``, gradients reduced in fp32.

    ``None`` computes in each parameter's own dtype (fp32 trainable, ``frozen_dtype`` frozen).
    The parameters the backbone keeps in fp32 are excepted by :func:`shard_model`. Forward inputs
    are not cast (``cast_forward_inputs=False``): FSDP would round the flow time before the time
    embedding and the RoPE tables before the blocks.
    """
    return MixedPrecisionPolicy(
        param_dtype=compute_dtype, reduce_dtype=torch.float32, cast_forward_inputs=False
    )


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
    """Store every parameter with ``requires_grad=False`` in ``dtype``, except those the backbone
    keeps in fp32 (:func:`fp32_parameter_names`); buffers stay as they are.

    Works on the meta device too (nothing is allocated there).

    Returns:
        The number of parameters cast.
    """
    keep = fp32_parameter_names(module)
    count = 0
    for prefix, sub in module.named_modules():
        for name, param in list(sub._parameters.items()):
            if param is None or param.requires_grad or param.dtype == dtype:
                continue
            if (f"{prefix}.{name}" if prefix else name) in keep:
                continue
            sub._parameters[name] = nn.Parameter(param.to(dtype), requires_grad=False)
            count += 1
    return count


def _unit_params(module: nn.Module, ignored: Collection[nn.Parameter]) -> list[nn.Parameter]:
    """The parameters a ``fully_shard(module)`` would take now: not sharded yet (units below it
    turned theirs into DTensors) and not ignored."""
    return [p for p in module.parameters() if not isinstance(p, DTensor) and p not in ignored]


def _kept_free_subtrees(
    module: nn.Module, kept: Collection[nn.Parameter], ignored: Collection[nn.Parameter]
) -> list[nn.Module]:
    """The largest submodules of ``module`` whose unsharded parameters are all outside ``kept``
    (a Wan block: ``attn1``, ``attn2``, ``ffn``; its ``scale_shift_table`` and ``norm2`` stay)."""
    free = []
    for child in module.children():
        params = _unit_params(child, ignored)
        if not params:
            continue
        if any(p in kept for p in params):
            free += _kept_free_subtrees(child, kept, ignored)
        else:
            free.append(child)
    return free


def _shard_unit(
    modules: list[nn.Module],
    kept: Collection[nn.Parameter],
    *,
    mesh: DeviceMesh,
    policy: MixedPrecisionPolicy,
    reshard_after_forward: bool,
    ignored: Collection[nn.Parameter] = frozenset(),
) -> None:
    """``fully_shard`` one unit; split in two when it holds parameters kept in fp32.

    The kept-free children become a unit with ``policy`` (their forwards all-gather them in the
    compute dtype); then the unit itself takes the rest with ``param_dtype=None``, so each of
    those is gathered and used in its stored dtype (kept ones: fp32). The remainder may also hold
    parameters a module owns directly next to kept children (none in Wan's blocks or root).
    """
    low = policy.param_dtype is not None and policy.param_dtype != torch.float32
    if low and any(p in kept for m in modules for p in _unit_params(m, ignored)):
        free = [c for m in modules for c in _kept_free_subtrees(m, kept, ignored)]
        if free:
            fully_shard(
                free if len(free) > 1 else free[0],
                mesh=mesh,
                mp_policy=policy,
                reshard_after_forward=reshard_after_forward,
                ignored_params=set(ignored) or None,
            )
        modules = [m for m in modules if _unit_params(m, ignored)] or modules[:1]
        policy = replace(policy, param_dtype=None)
    fully_shard(
        modules if len(modules) > 1 else modules[0],
        mesh=mesh,
        mp_policy=policy,
        reshard_after_forward=reshard_after_forward,
        ignored_params=set(ignored) or None,
    )


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
            Its ``cast_forward_inputs`` is ignored (never cast), and the parameters of
            :func:`fp32_parameter_names` compute in fp32 under any low-precision policy.
        frozen_dtype: Storage dtype of frozen parameters (codec and text encoder included),
            except those of :func:`fp32_parameter_names`; ``None`` keeps them as they are.
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
    # Whatever policy is given, no unit casts its inputs (see mixed_precision).
    policy = mixed_precision() if mp_policy is None else mp_policy
    policy = replace(policy, cast_forward_inputs=False)
    if frozen_dtype is not None:
        cast_frozen_(model, frozen_dtype)
    keep = fp32_parameter_names(model)
    kept = {p for n, p in model.named_parameters() if n in keep}  # after the cast replaced them
    for unit in shard_units(model):
        _shard_unit(
            unit, kept, mesh=mesh, policy=policy, reshard_after_forward=reshard_after_forward
        )
    # The frozen encoders run outside the model's forward (GenPropModel.encode_prompts, ...):
    # kept out of the root unit, they stay plain replicated tensors.
    encoders = [getattr(model, n, None) for n in ("codec", "text_encoder", "image_encoder")]
    ignored = {p for enc in encoders if enc is not None for p in enc.parameters()}
    _shard_unit(
        [model], kept, mesh=mesh, policy=policy, reshard_after_forward=False, ignored=ignored
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
