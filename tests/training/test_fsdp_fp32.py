"""What diffusers keeps in fp32 stays fp32 under sharded bf16 training (genprop.scale.sharding).

diffusers loads a Wan transformer in bf16 with its ``_keep_in_fp32_modules`` (time embedder,
``scale_shift_table`` modulation tables, affine norms) in fp32 and RoPE tables in fp32, and feeds
the timestep in fp32. The bound: on the same inputs, the sharded bf16 GenProp model at zero
injection deviates from diffusers' fp32 output by at most :data:`K` times what diffusers' own bf16
model deviates. Measured on these tiny random folders (relative L2 to fp32): diffusers bf16
0.0063 (Wan2.1-I2V) and 0.0055 (Wan2.2-A14B); the sharded model the same, bit for bit; the old
plan (every frozen parameter in bf16, every unit gathered in bf16, the flow time and RoPE tables
cast to bf16 at the unit boundaries) 0.023, 3.7 times diffusers' own.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from genprop.backbones.wan.folder import wan_config
from genprop.backbones.wan.tiny import write_tiny_wan_pipeline
from genprop.backbones.wan.weights import diffusers_name
from genprop.configs import GenPropConfig, preset
from genprop.modeling.model import GenPropModel
from genprop.modeling.weight_names import ZERO_INIT, backbone_copy_sources
from genprop.scale.sharded_weights import build_model_to_shard, load_pretrained_shards, materialize_
from genprop.scale.sharding import cast_frozen_, fp32_parameter_names, shard_model, shard_units

A14B, I2V21 = "wan2.2-a14b", "wan2.1-i2v"
TEXT_TOKENS = {A14B: 8, I2V21: 512}  # Wan2.1's image tokens need the full 512 text tokens
# Ours may deviate from diffusers' fp32 output by at most K x diffusers' own bf16 deviation.
K = 1.1
TIMES = (0.937, 0.9613)  # high-noise expert; not bf16 numbers (a cast moves them by ~1e-3)
BATCH, LATENT = 2, (2, 16, 4, 4)  # 5 frames x 32 x 32 pixels -> (T', C, h, w)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wan")
    return {v: write_tiny_wan_pipeline(root / v, seed=0, variant=v) for v in (A14B, I2V21)}


def _config(folder: Path, variant: str) -> GenPropConfig:
    geometry = dict(num_frames=5, height=32, width=32, sce_blocks=2)
    return wan_config(folder, text_max_tokens=TEXT_TOKENS[variant], **geometry)


def _freeze(model: GenPropModel) -> None:
    """Stage 2: frozen backbone, trainable SCE, MPD, task embedding and gate."""
    model.requires_grad_(False)
    for p in model.trainable_parameters("genprop"):
        p.requires_grad_(True)


def _old_plan(model: GenPropModel, mesh: Any) -> None:
    """The plan before fp32 was kept: every frozen parameter stored in bf16, every unit gathered
    in bf16, forward inputs (the flow time, the blocks' RoPE tables) cast to bf16 by each unit."""
    with torch.no_grad():
        for sub in model.modules():
            for name, p in list(sub._parameters.items()):
                if p is not None and not p.requires_grad:
                    sub._parameters[name] = nn.Parameter(p.to(torch.bfloat16), requires_grad=False)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for unit in shard_units(model):
        fully_shard(unit if len(unit) > 1 else unit[0], mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=False)


def _sharded(cfg: GenPropConfig, mesh: Any, *, old: bool = False) -> GenPropModel:
    """As ``trainer=fsdp``: meta build -> freeze -> shard (bf16) -> allocate -> read the folder."""
    model = build_model_to_shard(cfg, encoders=False)
    _freeze(model)
    if old:
        _old_plan(model, mesh)
    else:
        shard_model(model, mesh)  # the default plan: bf16 compute, frozen stored in bf16
    materialize_(model, "cpu")
    load_pretrained_shards(model)  # zero injections: GenProp's output is the backbone's
    return model


def _inputs(variant: str) -> dict[str, torch.Tensor | None]:
    g = torch.Generator().manual_seed(0)
    x_t, first, content, target = (torch.randn(BATCH, *LATENT, generator=g) for _ in range(4))
    image = torch.randn(BATCH, 5, 16, generator=g) if variant == I2V21 else None
    return {
        "x_t": x_t,
        "t": torch.tensor(TIMES),
        "first_latent": first,
        "content": content,
        "target": target,
        "context": torch.randn(BATCH, TEXT_TOKENS[variant], 16, generator=g),
        "image": image,
    }


def _forward(model: GenPropModel, x: dict[str, Any], rows: slice = slice(None)) -> Any:
    """A stage-2 GenProp step (SCE, MPD and gate run) on the samples ``rows`` of ``x``."""
    image = None if x["image"] is None else x["image"][rows]
    return model(
        x["x_t"][rows],
        x["t"][rows],
        x["first_latent"][rows],
        content=x["content"][rows],
        task=torch.ones(len(x["t"][rows]), dtype=torch.long),
        context=x["context"][rows],
        image_embeds=image,
    )


@torch.no_grad()
def _velocity(model: GenPropModel, x: dict[str, Any]) -> torch.Tensor:
    return _forward(model, x).velocity.float()


@torch.no_grad()
def _diffusers(folder: Path, dtype: torch.dtype, inp: torch.Tensor, x: dict[str, Any]) -> Any:
    """diffusers' own transformer (``torch_dtype`` applies its ``_keep_in_fp32_modules``) on the
    I2V input as Wan's pipeline feeds it: latents and embeddings in ``dtype``, timestep in fp32."""
    from diffusers import WanTransformer3DModel

    kwargs = {} if dtype == torch.float32 else {"torch_dtype": dtype}
    model = WanTransformer3DModel.from_pretrained(
        folder, subfolder="transformer", local_files_only=True, **kwargs
    )
    image = None if x["image"] is None else x["image"].to(dtype)
    out = model(
        rearrange(inp, "b t c h w -> b c t h w").to(dtype),
        x["t"] * 1000.0,  # Wan's timesteps are sigma * 1000, as GenProp's backbone computes them
        x["context"].to(dtype),
        encoder_hidden_states_image=image,
        return_dict=False,
    )[0]
    return rearrange(out.float(), "b c t h w -> b t c h w")


def _deviation(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm())


def _record_compute_dtypes(model: GenPropModel) -> dict[str, torch.dtype]:
    """Hooks noting, when each runs, the dtypes a module's forward sees (parameters as gathered by
    FSDP, inputs as they arrive)."""
    seen: dict[str, torch.dtype] = {}

    def note(module: nn.Module, key: str, what: Any) -> None:
        module.register_forward_pre_hook(lambda m, args: seen.update({key: what(m, args)}))

    time_embedder = model.backbone.condition_embedder.time_embedder
    note(time_embedder, "time_embedder.input", lambda m, a: a[0].dtype)
    note(time_embedder, "time_embedder.weight", lambda m, a: m.linear_1.weight.dtype)
    for name, block in (
        ("frozen", model.backbone.blocks[0]),
        ("copy", model.content_encoder.blocks[0]),
    ):
        note(block, f"{name}.table", lambda m, a: m.scale_shift_table.dtype)
        note(block, f"{name}.rope", lambda m, a: a[3][0].dtype)  # (hidden, context, temb, rope)
        note(block.norm2, f"{name}.norm2", lambda m, a: m.weight.dtype)
        note(block.attn1, f"{name}.attn", lambda m, a: m.to_q.weight.dtype)
    return seen


@pytest.mark.parametrize("variant", [I2V21, A14B])
def test_sharded_bf16_matches_diffusers_bf16(
    folders: dict[str, Path], variant: str, single_rank_mesh: Any
) -> None:
    folder, x = folders[variant], _inputs(variant)
    model = _sharded(_config(folder, variant), single_rank_mesh)
    seen = _record_compute_dtypes(model)
    ours = _velocity(model, x)
    inp = model.backbone.i2v_input(x["x_t"], x["first_latent"])
    ref = _diffusers(folder, torch.float32, inp, x)
    theirs = _diffusers(folder, torch.bfloat16, inp, x)
    own = _deviation(theirs, ref)
    assert own > 1e-4  # bf16 does deviate: the bound below is not vacuous
    assert _deviation(ours, ref) <= K * own, (_deviation(ours, ref), own)
    fp32, bf16 = torch.float32, torch.bfloat16
    assert seen == {
        "time_embedder.input": fp32,  # the flow time reaches the time embedding uncast
        "time_embedder.weight": fp32,
        **{f"{b}.{k}": fp32 for b in ("frozen", "copy") for k in ("table", "rope", "norm2")},
        "frozen.attn": bf16,
        "copy.attn": bf16,  # the trainable copy's fp32 masters are gathered in bf16
    }


def test_old_plan_fails_the_bound(folders: dict[str, Path], single_rank_mesh: Any) -> None:
    """The plan before this one, on the same check (one expert: the old plan casts the flow time,
    from which a two-expert model cannot route)."""
    folder, x = folders[I2V21], _inputs(I2V21)
    model = _sharded(_config(folder, I2V21), single_rank_mesh, old=True)
    old = _velocity(model, x)
    inp = model.backbone.i2v_input(x["x_t"], x["first_latent"])
    ref = _diffusers(folder, torch.float32, inp, x)
    own = _deviation(_diffusers(folder, torch.bfloat16, inp, x), ref)
    assert _deviation(old, ref) > 2 * K * own, (_deviation(old, ref), own)


def test_cast_frozen_keeps_what_diffusers_keeps_in_fp32(folders: dict[str, Path]) -> None:
    from diffusers import WanTransformer3DModel

    folder = folders[A14B]
    model = GenPropModel.from_config(_config(folder, A14B), encoders=False)
    model.requires_grad_(False)
    model.content_encoder.requires_grad_(True)  # the low-noise expert's SCE and both MPDs frozen
    cast_frozen_(model, torch.bfloat16)
    params = dict(model.named_parameters())
    for prefix, sub in (("backbone.", "transformer"), ("expert_2.backbone.", "transformer_2")):
        theirs = WanTransformer3DModel.from_pretrained(
            folder, subfolder=sub, torch_dtype=torch.bfloat16, local_files_only=True
        )
        kept = {n for n, p in theirs.named_parameters() if p.dtype == torch.float32}
        assert any("time_embedder" in n for n in kept) and any("norm2" in n for n in kept)
        ours = {n: p for n, p in params.items() if n.startswith(prefix)}
        assert len(ours) == len(dict(theirs.named_parameters()))
        for name, p in ours.items():
            fp32 = diffusers_name(name.removeprefix(prefix)) in kept
            assert p.dtype == (torch.float32 if fp32 else torch.bfloat16), name
    # Frozen copies of kept parameters stay fp32 too (they compute as their source does).
    frozen_copies = set()
    for name, source in backbone_copy_sources(model).items():
        if not params[name].requires_grad:
            assert params[name].dtype == params[source].dtype, name
            frozen_copies.add(params[name].dtype)
        else:
            assert params[name].dtype == torch.float32, name  # trainable: fp32 masters
    assert frozen_copies == {torch.float32, torch.bfloat16}
    # The tiny DiT keeps nothing: all of its frozen parameters follow the frozen dtype.
    assert fp32_parameter_names(GenPropModel.from_config(preset("cpu_test"))) == set()


# ---------------------------------------------------------------- two ranks


def _grad_rank(rank: int, world: int, port: int, folder: str, out: str) -> None:
    """One gloo rank of a sharded bf16 step: rank 0 on sample 0, rank 1 on sample 1 with its loss
    scaled by 0 (it runs every collective but adds no gradient). Rank 0 writes the gathered
    gradients of the trainable parameters and whether FSDP manages them."""
    # FSDP2 warns that module outputs are views (3-D linear outputs); nothing modifies them in
    # place.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module.*view tensor")
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # GenProp's own layers start random: the same on every world size
        model = _sharded(_config(Path(folder), A14B), init_device_mesh("cpu", (world,)))
        with torch.no_grad():  # non-zero injections, so that gradients reach the copied blocks
            for name, p in model.named_parameters():
                if ZERO_INIT.match(name):
                    p.fill_(0.02)
        x, rows = _inputs(A14B), slice(rank, rank + 1)
        velocity = _forward(model, x, rows).velocity.float()
        ((velocity - x["target"][rows]).pow(2).mean() * (1.0 - rank)).backward()
        grads, report = {}, {}
        for name, p in model.named_parameters():
            if p.requires_grad and p.grad is not None:
                managed = [isinstance(p, DTensor), isinstance(p.grad, DTensor)]
                report[name] = managed
                # full_tensor is collective: every rank gathers (the same names on each rank).
                grads[name] = p.grad.full_tensor() if managed[1] else p.grad
        if rank == 0:
            save_file(grads, str(Path(out) / f"grads_{world}.safetensors"))
            (Path(out) / f"report_{world}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def _spawn(world: int, folder: Path, out: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(
        _grad_rank, args=(world, port, str(folder), str(out)), nprocs=world, start_method="spawn"
    )


def test_kept_trainable_copies_are_reduced_across_ranks(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    """The SCE's copied ``scale_shift_table`` and ``norm2`` compute in fp32 in FSDP units of their
    own, whose gradients are still averaged over the ranks. Rank 0 computes exactly what a single
    process computes on sample 0 and rank 1 adds zero, so every reduced gradient is exactly half
    the single-process one; a parameter left out of the reduction would keep rank 0's own (x 2)."""
    _spawn(1, folders[A14B], tmp_path)
    _spawn(2, folders[A14B], tmp_path)
    one = load_file(str(tmp_path / "grads_1.safetensors"))
    two = load_file(str(tmp_path / "grads_2.safetensors"))
    report = json.loads((tmp_path / "report_2.json").read_text())
    kept = fp32_parameter_names(GenPropModel.from_config(_config(folders[A14B], A14B)))
    copies = [n for n in one if n in kept and n.startswith("content_encoder.blocks.")]
    assert any(".scale_shift_table" in n for n in copies) and any(".norm2." in n for n in copies)
    assert set(two) == set(one)
    for name in one:
        torch.testing.assert_close(two[name], one[name] / 2, rtol=1e-6, atol=0, msg=name)
        assert report[name] == [True, True], name  # sharded parameter and gradient: FSDP's
        assert two[name].dtype == torch.float32, name  # fp32 reduction into fp32 masters
    assert all(one[n].abs().max() > 0 for n in copies)
