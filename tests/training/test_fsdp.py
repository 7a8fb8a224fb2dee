"""Sharded training (FSDP2) on a tiny model: 2 gloo processes on CPU, NCCL on GPUs.

Tolerances: the sharded model computes in fp32 here (``compute_dtype=None``), so its loss and
gradient norm equal the single-process ones up to float reduction order (relative 1e-5).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from fsdp_workers import losses, run, set_trainable
from torch.distributed.checkpoint import FileSystemReader

from genprop.configs import preset
from genprop.modeling.model import GenPropModel

REL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(world: int, folder: Path, out: Path, mode: str, device: str = "cpu") -> dict[str, Any]:
    """Run ``fsdp_workers.run`` on ``world`` ranks; rank 0's results."""
    args = (world, _free_port(), str(folder), str(out), mode, device)
    mp.start_processes(run, args=args, nprocs=world, start_method="spawn")
    return json.loads((out / f"result_{mode}_{world}_0.json").read_text())


def _reference_folder(root: Path) -> tuple[Path, GenPropModel]:
    """A seeded cpu_test model whose zero-initialised GenProp parts are made non-zero (so the
    SCE, its injections and L_grad all matter), written with ``save_pretrained``."""
    torch.manual_seed(0)
    model = GenPropModel.from_config(preset("cpu_test"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("content_encoder.", "task_embedding.", "backbone.final")):
                p.add_(0.05 * torch.randn_like(p))
    set_trainable(model)
    return model.save_pretrained(root / "init"), model


def _close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One sharded step at world size 2 (checkpoint + export written) and its references."""
    root = tmp_path_factory.mktemp("fsdp")
    folder, model = _reference_folder(root)
    ref = losses(model, 0)
    ref["total"].backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    ref_norm = torch.nn.utils.get_total_norm([p.grad for p in trainable]).item()
    res = _spawn(2, folder, root, "train")
    return {"root": root, "folder": folder, "res": res, "loss": ref, "norm": ref_norm}


def test_world_2_step_matches_single_process(trained: dict[str, Any]) -> None:
    res, ref = trained["res"], trained["loss"]
    assert _close(res["loss"], ref["total"].item()), (res["loss"], ref["total"].item())
    assert ref["grad"].item() > 0 and _close(res["grad"], ref["grad"].item())  # L_grad pass
    assert _close(res["grad_norm"], trained["norm"])  # reduce-scattered gradients
    assert trained["norm"] > 10 * 1e-3
    assert res["clipped_norm"] == pytest.approx(1e-3, rel=1e-3)  # clipping on DTensor grads
    assert res["ema_moved"] > 0 and res["ema_error"] < 1e-6  # EMA updated on the local shards


def test_checkpoint_holds_only_trainable_shards(trained: dict[str, Any]) -> None:
    keys = set(FileSystemReader(trained["root"] / "ckpt").read_metadata().state_dict_metadata)
    weights = {k.removeprefix("model.") for k in keys if k.startswith("model.")}
    assert weights and all(
        k.startswith(("content_encoder.", "mask_decoder.")) or k.startswith("task_embedding.")
        for k in weights
    )
    assert not any("backbone" in k or "codec" in k or "text_encoder" in k for k in keys)
    assert any(k.startswith("ema.content_encoder.") for k in keys)
    assert any(k.startswith("optim.state.") for k in keys)


def test_export_from_shards_round_trips(trained: dict[str, Any]) -> None:
    exported = GenPropModel.from_pretrained(trained["root"] / "export")
    set_trainable(exported)
    assert _close(losses(exported, 1)["total"].item(), trained["res"]["next_loss"])


def test_resume_at_world_size_1(trained: dict[str, Any]) -> None:
    res = _spawn(1, trained["folder"], trained["root"], "resume")
    want = trained["res"]
    assert _close(res["ema_checksum"], want["ema_checksum"], 1e-9)
    assert _close(res["next_loss"], want["next_loss"])
    assert _close(res["after_step_loss"], want["after_step_loss"])  # optimizer state restored


@pytest.mark.slow
def test_resume_at_world_size_2(trained: dict[str, Any]) -> None:
    res = _spawn(2, trained["folder"], trained["root"], "resume")
    want = trained["res"]
    assert _close(res["ema_checksum"], want["ema_checksum"], 1e-9)
    assert _close(res["next_loss"], want["next_loss"])
    assert _close(res["after_step_loss"], want["after_step_loss"])


@pytest.mark.slow
def test_default_plan_stores_frozen_bf16_and_computes_in_bf16(trained: dict[str, Any]) -> None:
    res = _spawn(2, trained["folder"], trained["root"], "bf16")
    assert res["frozen_dtypes"] == ["torch.bfloat16"]
    assert res["trainable_dtypes"] == ["torch.float32"]
    assert _close(res["bf16_loss"], trained["loss"]["total"].item(), 5e-2)  # bf16 compute


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nccl_step_checkpoint_resume(tmp_path: Path) -> None:
    world = torch.cuda.device_count()
    folder, model = _reference_folder(tmp_path)
    ref = losses(model, 0)["total"].item()
    res = _spawn(world, folder, tmp_path, "train", device="cuda")
    assert _close(res["loss"], ref, 1e-4)  # GPU matmuls (TF32 off by default) vs CPU
    assert res["clipped_norm"] == pytest.approx(1e-3, rel=1e-3)
    again = _spawn(world, folder, tmp_path, "resume", device="cuda")
    assert _close(again["next_loss"], res["next_loss"])
    assert _close(again["after_step_loss"], res["after_step_loss"])
