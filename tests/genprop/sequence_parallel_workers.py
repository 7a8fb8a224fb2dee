"""Process bodies and helpers of the sequence-parallel tests (``test_sequence_parallel.py``).

A *spec* (plain dict, picklable for spawned ranks) names the model: ``{"kind": "dit", ...}`` for a
tiny DiT or ``{"kind": "wan", "folder": ..., ...}`` for a tiny Wan pipeline folder, and the clip
geometry. Every process builds the same model (seeded), gives its zero-initialised layers the
same seeded random values (so the SCE, MPD, gate and L_grad all matter), and runs one stage-2
step with L_grad on, the backbone trained too (so parameters before the token split, inside the
blocks and after the gather all get gradients).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from genprop.backbones.wan.folder import wan_config
from genprop.configs import GenPropConfig, preset
from genprop.inference.sampler import sample_latents
from genprop.losses import training_losses
from genprop.modeling.model import GenPropModel
from genprop.region_aware_loss import LossWeights
from genprop.scale.sequence_parallel import SequenceParallel, enable_sequence_parallel
from genprop.scale.sharding import mixed_precision, shard_model
from genprop.video_batch import VideoBatch

WEIGHTS = LossWeights(mask=2.0, grad=1.0, mpd=1.0, gate=1.0)


def config(spec: dict[str, Any]) -> GenPropConfig:
    """The GenProp config of ``spec`` (see module docstring)."""
    geometry = {k: spec[k] for k in ("num_frames", "height", "width")}
    if spec["kind"] == "wan":
        cfg = wan_config(spec["folder"], sce_blocks=2, text_max_tokens=spec["text"], **geometry)
    else:
        cfg = preset("cpu_test")
        for key, value in geometry.items():
            setattr(cfg, key, value)
    # Its head runs on the gathered MPD features. Not under FSDP2, which refuses its scalar
    # strength parameter (with or without sequence parallelism).
    cfg.content_gate = spec.get("gate", True)
    return cfg


@torch.no_grad()
def build(spec: dict[str, Any]) -> GenPropModel:
    """The seeded model of ``spec``: zero-initialised layers randomised, all trainable,
    activation checkpointing on (the collectives then rerun in backward)."""
    torch.manual_seed(0)
    model = GenPropModel.from_config(config(spec))
    for name, p in model.named_parameters():
        if not p.any():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model.requires_grad_(True)
    for module in (model.text_encoder, model.codec, model.image_encoder):
        if module is not None:
            module.requires_grad_(False)
    model.backbone.gradient_checkpointing = True
    return model


def batch(spec: dict[str, Any], seed: int) -> VideoBatch:
    """One seeded clip of the spec's geometry."""
    g = torch.Generator().manual_seed(seed)
    t, h, w = spec["num_frames"], spec["height"], spec["width"]
    return VideoBatch(
        target=torch.rand(1, t, 3, h, w, generator=g) * 2 - 1,
        first=torch.rand(1, 3, h, w, generator=g) * 2 - 1,
        sce=torch.rand(1, t, 3, h, w, generator=g) * 2 - 1,
        mask=(torch.rand(1, t, h, w, generator=g) > 0.6).float(),
        task=torch.tensor([seed % 5]),
        prompt=["remove the red car"],
    )


@torch.no_grad()
def outputs(model: GenPropModel, sample: VideoBatch) -> dict[str, torch.Tensor]:
    """The forward's outputs on latents of ``sample`` at a fixed time, and a short sampling."""
    first_latent = model.encode_first_frame(sample.first, sample.target.shape[1])
    g = torch.Generator().manual_seed(7)
    x_t, content = (torch.randn(first_latent.shape, generator=g) for _ in range(2))
    context, mask = model.encode_prompts(sample.prompt, 1)
    out = model(
        x_t,
        torch.tensor([0.7]),
        first_latent,
        content=content,
        task=sample.task,
        context=context,
        context_mask=mask,
        image_embeds=model.encode_image(sample.first),
    )
    named = {"velocity": out.velocity, "mask_logits": out.mask_logits, "gate": out.gate}
    # What the sampler makes of the forward: 2 Euler steps with guidance (a batch of 2 inside).
    named["sampled"], _ = sample_latents(
        model,
        first_latent,
        content=content,
        task=sample.task,
        prompts=sample.prompt,
        steps=2,
        guidance=2.0,
        generator=torch.Generator().manual_seed(5),
        image_embeds=model.encode_image(sample.first),
    )
    return {k: v.float().contiguous() for k, v in named.items() if v is not None}


def step(model: GenPropModel, sample: VideoBatch, seed: int) -> dict[str, torch.Tensor]:
    """Stage-2 losses of ``sample`` (noise, times and dropout from ``seed``), backward done."""
    model.zero_grad(set_to_none=True)
    gen = torch.Generator().manual_seed(seed)
    losses = training_losses(model, sample, stage="genprop", weights=WEIGHTS, generator=gen)
    losses["total"].backward()
    return {f"loss/{k}": v.detach().float().reshape(1).clone() for k, v in losses.items()}


def gradients(model: GenPropModel) -> dict[str, torch.Tensor]:
    """Every parameter gradient, whole (sharded ones gathered: collective)."""
    grads = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
            grads[f"grad/{name}"] = g.float().contiguous()
    return grads


def reference(spec: dict[str, Any], seeds: list[int]) -> dict[str, torch.Tensor]:
    """One process: outputs of sample ``seeds[0]``; losses and gradients averaged over the
    samples, each stepped alone as its data-parallel rank would."""
    model = build(spec)
    result = {f"out/{k}": v for k, v in outputs(model, batch(spec, seeds[0])).items()}
    total: dict[str, torch.Tensor] = {}
    for seed in seeds:
        found = {**step(model, batch(spec, seed), seed), **gradients(model)}
        total = {k: total.get(k, 0) + v / len(seeds) for k, v in found.items()}
    return {**result, **total}


def sequence_parallel_rank(
    rank: int, world: int, port: int, spec: dict[str, Any], sp: int, fsdp: bool, out: str
) -> None:
    """One gloo rank of a (world / sp) x sp mesh: data-parallel rank ``rank // sp`` steps sample
    ``seeds[rank // sp]``; FSDP2 over all ranks when ``fsdp`` (fp32, or bf16 compute with
    ``spec["bf16"]``), else the gradients are
    averaged over all ranks by hand (what FSDP's reduction does). Writes
    ``<out>/rank_<rank>.safetensors``."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world // sp, sp), mesh_dim_names=("dp", "sp"))
        model = build(spec)
        if fsdp:
            flat = mesh["dp", "sp"]._flatten("dp_sp")
            dtype = torch.bfloat16 if spec.get("bf16") else None  # compute dtype; else fp32
            shard_model(model, flat, mp_policy=mixed_precision(dtype), frozen_dtype=None)
        enable_sequence_parallel(model, SequenceParallel.from_group(mesh["sp"].get_group()))
        dp_rank = rank // sp
        seed = spec["seeds"][dp_rank]
        result = {f"out/{k}": v for k, v in outputs(model, batch(spec, seed)).items()}
        result.update(step(model, batch(spec, seed), seed))
        grads = gradients(model)
        if not fsdp:
            for g in grads.values():
                dist.all_reduce(g)
                g /= world
        save_file({**result, **grads}, str(Path(out) / f"rank_{rank}.safetensors"))
    finally:
        dist.destroy_process_group()
