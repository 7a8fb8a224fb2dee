"""Wan2.2-A14B's expert routing cannot diverge across ranks: the expert of a step is an integer
decided once from fp32 times, before the bf16 policy casts anything (genprop.modeling.experts).

A flow time in [0.9, 0.9004) is above the boundary in fp32 but rounds below it in bf16; a rank that
routed from the cast time ran the low-noise expert while the others ran the high-noise one, and
FSDP gathered and reduced shards of two different experts without an error.
"""

from __future__ import annotations

import json
import os
import socket
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import distribute_tensor

from genprop.backbones.wan.pretrained import wan_config, write_tiny_wan_pipeline
from genprop.configs import GenPropConfig
from genprop.modeling.experts import HIGH_NOISE, LOW_NOISE, choose_training_expert
from genprop.modeling.model import GenPropModel
from genprop.scale.sharded_weights import build_model_to_shard, load_pretrained_shards, materialize_
from genprop.scale.sharding import shard_model

GEOMETRY: dict[str, Any] = dict(num_frames=5, height=32, width=32, sce_blocks=2, text_max_tokens=8)
BOUNDARY = 0.9
# Above the boundary in fp32, below it once cast to bf16 (0.8984375): less than one bf16 ulp.
STRADDLING = 0.9001
TIMES = (STRADDLING, 0.95)  # one sample per rank


@pytest.fixture(scope="module")
def a14b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_wan_pipeline(
        tmp_path_factory.mktemp("wan") / "a14b", seed=0, variant="wan2.2-a14b"
    )


def _config(folder: Path) -> GenPropConfig:
    return wan_config(folder, **GEOMETRY)


def test_the_straddling_time_rounds_below_the_boundary_in_bf16() -> None:
    t = torch.tensor([STRADDLING])
    assert float(t) >= BOUNDARY > float(t.bfloat16())


def test_routing_from_a_cast_time_is_refused_and_an_explicit_expert_wins(a14b: Path) -> None:
    model = GenPropModel.from_config(_config(a14b))
    t = torch.tensor([STRADDLING])
    assert model.expert_for(t) == HIGH_NOISE
    with pytest.raises(ValueError, match=r"t: expert routing needs float32 flow times"):
        model.route(t.bfloat16())
    assert model.route(t.bfloat16(), HIGH_NOISE).backbone is model.backbone
    assert model.route(t, LOW_NOISE).backbone is model.expert_2.backbone
    with pytest.raises(ValueError, match=r"expert: expected an expert index in \[0, 1\], got 2"):
        model.route(t, 2)
    with pytest.raises(ValueError, match=r"spans the expert boundary"):
        model.route(torch.tensor([0.5, 0.95]))


def test_train_experts_selects_the_trained_sce_and_mpd(a14b: Path) -> None:
    model = GenPropModel.from_config(_config(a14b))

    def trained(choice: str) -> set[str]:
        model.set_train_experts(choice)
        ids = {id(p) for p in model.trainable_parameters("genprop")}
        return {n.split(".")[0] for n, p in model.named_parameters() if id(p) in ids}

    assert trained("both") == {"content_encoder", "mask_decoder", "task_embedding", "expert_2"}
    assert trained("high") == {"content_encoder", "mask_decoder", "task_embedding"}
    assert trained("low") == {"task_embedding", "expert_2"}
    with pytest.raises(ValueError, match=r"model.net.train_experts: expected one of"):
        model.set_train_experts("middle")
    for experts, want in (((HIGH_NOISE,), HIGH_NOISE), ((LOW_NOISE,), LOW_NOISE)):
        drawn = {choose_training_expert(BOUNDARY, 5.0, seed=s, generator=None, experts=experts)
                 for s in range(20)}  # fmt: skip
        assert drawn == {want}
    one = GenPropModel.from_config(GenPropConfig())
    with pytest.raises(ValueError, match=r"'low' needs a two-expert backbone"):
        one.set_train_experts("low")


def _inputs(model: GenPropModel) -> dict[str, torch.Tensor]:
    """Seeded latent inputs of the two samples (every process makes the same)."""
    g = torch.Generator().manual_seed(0)
    f, c = model.codec.spatial_factor, model.codec.latent_channels
    shape = (2, model.latent_frames, c, GEOMETRY["height"] // f, GEOMETRY["width"] // f)
    return {
        "x_t": torch.randn(shape, generator=g),
        "first_latent": torch.randn(shape, generator=g),
        "content": torch.randn(shape, generator=g),
        "target": torch.randn(shape, generator=g),
        "t": torch.tensor(TIMES),
    }


@torch.no_grad()
def _same_init_at_any_world_size(model: GenPropModel, defaults: list[str]) -> None:
    """Give the randomly initialised parameters (``defaults``: not in the folder) values that do
    not depend on the world size: each rank initialises its own shard, so they would."""
    params = dict(model.named_parameters())
    for name in defaults:
        p = params[name]
        if not p.full_tensor().any():  # collective; a zero-initialised layer stays zero
            continue
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        full = torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05
        p.to_local().copy_(distribute_tensor(full, p.device_mesh, p.placements).to_local())


def _rank(rank: int, world: int, port: int, folder: str, out_dir: str) -> None:
    """One gloo rank of a sharded bf16 step on its share of the two samples."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = build_model_to_shard(_config(Path(folder)))
        model.requires_grad_(False)
        for p in model.trainable_parameters("genprop"):
            p.requires_grad_(True)
        shard_model(model, init_device_mesh("cpu", (world,)))  # bf16 compute, frozen in bf16
        materialize_(model, "cpu")
        _same_init_at_any_world_size(model, load_pretrained_shards(model))
        per = 2 // world
        x = {k: v[rank * per : (rank + 1) * per] for k, v in _inputs(model).items()}
        context, mask = model.encode_prompts(["remove the car"] * per, per)
        kwargs = dict(content=x["content"], context=context, context_mask=mask,
                      task=torch.ones(per, dtype=torch.long))  # fmt: skip
        expert = model.expert_for(x["t"])  # once, from fp32, before any cast
        out = model(x["x_t"], x["t"], x["first_latent"], **kwargs, expert=expert)
        loss = (out.velocity.float() - x["target"]).pow(2).mean()
        loss.backward()
        grads = {
            n: p.grad.full_tensor().float()  # collective: every rank gathers
            for n, p in model.named_parameters()
            if p.requires_grad and p.grad is not None
        }
        report = {"expert": expert, "loss": loss.item()}
        if rank == 0:
            save_file(grads, str(Path(out_dir) / f"grads_{world}.safetensors"))
        save_file(
            {"velocity": out.velocity.float().contiguous()},
            str(Path(out_dir) / f"velocity_{world}_{rank}.safetensors"),
        )
        (Path(out_dir) / f"report_{world}_{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def _run(world: int, folder: Path, out: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(
        _rank, args=(world, port, str(folder), str(out)), nprocs=world, start_method="spawn"
    )


def test_two_gloo_ranks_straddling_the_boundary_match_one_process(
    a14b: Path, tmp_path: Path
) -> None:
    _run(1, a14b, tmp_path)
    _run(2, a14b, tmp_path)
    one = json.loads((tmp_path / "report_1_0.json").read_text())
    two = [json.loads((tmp_path / f"report_2_{r}.json").read_text()) for r in (0, 1)]
    for report in (one, *two):
        assert report["expert"] == HIGH_NOISE
    # Outputs: each rank's sample as in the one-process batch.
    whole = load_file(str(tmp_path / "velocity_1_0.safetensors"))["velocity"]
    for r in (0, 1):
        part = load_file(str(tmp_path / f"velocity_2_{r}.safetensors"))["velocity"]
        torch.testing.assert_close(part, whole[r : r + 1], atol=2e-2, rtol=2e-2)
    # Loss: the mean of the ranks' losses; gradients: FSDP's average over ranks.
    assert sum(r["loss"] for r in two) / 2 == pytest.approx(one["loss"], rel=1e-2)
    g1 = load_file(str(tmp_path / "grads_1.safetensors"))
    g2 = load_file(str(tmp_path / "grads_2.safetensors"))
    # The injections start at zero: their output layers are what the step's gradients reach.
    assert set(g1) == set(g2) and any(g1[n].abs().sum() > 0 for n in g1)
    # Only the high-noise expert ran: the low-noise expert's SCE got no gradient anywhere.
    assert not any(n.startswith("expert_2.") for n in g1)
    for name in g1:
        scale = float(g1[name].abs().max()) + 1e-6
        torch.testing.assert_close(g2[name], g1[name], atol=3e-2 * scale, rtol=3e-2)
