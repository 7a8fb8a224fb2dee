"""Ulysses sequence parallelism (genprop.scale.sequence_parallel) on CPU gloo ranks equals one
process: forward outputs, a short guided sampling, every loss term (L_grad on) and every parameter
gradient, for the tiny DiT and tiny Wan2.1-I2V (image tokens) / Wan2.2-TI2V (per-token timesteps)
folders, with token counts that need padding and ones that do not, and on a 2 x 2 (data x
sequence) FSDP2 mesh."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from sequence_parallel_workers import build, reference, sequence_parallel_rank

from genprop.scale.sequence_parallel import (
    NO_SEQUENCE_PARALLEL,
    SequenceParallel,
    enable_sequence_parallel,
)

# fp32: the group only reorders sums (attention over the same keys, partial gradient sums added
# by the reduction), so results agree to float rounding: observed up to 2e-4 of a tensor's largest
# magnitude, on gradients that are small differences of larger terms. bf16 compute against the
# fp32 process: bf16 rounding (as tests/training/test_expert_routing.py).
FP32, BF16 = 1e-3, 3e-2
DIT = dict(kind="dit", num_frames=3, height=24, width=24)  # 3 x 3 x 3 = 27 tokens: one pad token


def _spawn(world: int, spec: dict[str, Any], sp: int, fsdp: bool, out: Path) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(
        sequence_parallel_rank,
        args=(world, port, spec, sp, fsdp, str(out)),
        nprocs=world,
        start_method="spawn",
    )
    return [load_file(str(out / f"rank_{r}.safetensors")) for r in range(world)]


def _close(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], prefix: str, tol: float
) -> None:
    """Every ``prefix`` entry within ``tol`` relative (elementwise, and of the entry's largest
    magnitude)."""
    keys = {k for k in want if k.startswith(prefix)}
    assert keys and keys == {k for k in got if k.startswith(prefix)}
    for key in sorted(keys):
        scale = max(float(want[key].abs().max()), 1e-3)
        torch.testing.assert_close(got[key], want[key], rtol=tol, atol=tol * scale,
                                   msg=lambda m, key=key: f"{key}: {m}")  # fmt: skip


def _check(ranks: list[dict], want: dict[str, torch.Tensor], sp: int, tol: float = FP32) -> None:
    """Outputs of data-parallel rank 0's ranks, losses averaged over data-parallel ranks,
    gradients (already averaged) of every rank, against one process."""
    for rank in ranks[:sp]:
        _close(rank, want, "out/", tol)
    dp = ranks[::sp]
    losses = {k: sum(r[k] for r in dp) / len(dp) for k in dp[0] if k.startswith("loss/")}
    assert {"loss/grad", "loss/mpd"} <= set(losses)
    assert float(losses["loss/grad"]) > 0
    _close(losses, want, "loss/", tol)
    grads = [k for k in want if k.startswith("grad/")]
    # every kind of parameter is reached: before the split, inside the blocks, after the gather
    for part in ("patch_embedder", "blocks", "content_encoder", "mask_decoder", "task_embedding"):
        assert any(part in k and want[k].abs().sum() > 0 for k in grads), part
    for rank in ranks:
        _close(rank, want, "grad/", tol)


@pytest.fixture(scope="module")
def wan_spec(tiny_wan_folder: Any) -> Any:
    def spec(variant: str) -> dict[str, Any]:
        folder = str(tiny_wan_folder(variant))
        if variant == "wan2.1-i2v":  # 3 x 3 x 3 = 27 tokens (one pad token), CLIP image tokens
            return dict(kind="wan", folder=folder, num_frames=9, height=48, width=48, text=512)
        # Wan2.2-TI2V: 2 x 2 x 2 = 8 tokens, per-token timesteps (frame 0 at t = 0)
        return dict(kind="wan", folder=folder, num_frames=5, height=64, width=64, text=8)

    return spec


@pytest.mark.parametrize("variant", ["dit", "wan2.1-i2v", "wan2.2-ti2v"])
def test_two_sequence_parallel_ranks_equal_one_process(
    variant: str, wan_spec: Any, tmp_path: Path
) -> None:
    spec = {**(DIT if variant == "dit" else wan_spec(variant)), "seeds": [3]}
    want = reference(spec, spec["seeds"])
    _check(_spawn(2, spec, sp=2, fsdp=False, out=tmp_path), want, sp=2)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_fsdp_data_by_sequence_mesh_equals_one_process(bf16: bool, tmp_path: Path) -> None:
    """2 data-parallel x 2 sequence-parallel ranks, FSDP2 over all four, two samples."""
    spec = {**DIT, "seeds": [3, 4], "gate": False, "bf16": bf16}
    want = reference(spec, spec["seeds"])  # fp32
    _check(_spawn(4, spec, sp=2, fsdp=True, out=tmp_path), want, sp=2, tol=BF16 if bf16 else FP32)


@pytest.mark.parametrize("variant", ["dit", "wan2.1-i2v"])
def test_heads_not_divisible_by_the_group_is_one_line(variant: str, wan_spec: Any) -> None:
    model = build(DIT if variant == "dit" else wan_spec(variant))  # 2 heads
    with pytest.raises(ValueError, match=r"^trainer.sequence_parallel: 4 does not divide the "
                       r"backbone's 2 attention heads$"):  # fmt: skip
        enable_sequence_parallel(model, SequenceParallel(group=None, rank=0, size=4))
    assert model.sequence_parallel is NO_SEQUENCE_PARALLEL


def test_one_rank_is_the_identity() -> None:
    sp = NO_SEQUENCE_PARALLEL
    x = torch.randn(2, 5, 3)
    assert sp.shard(x) is x and sp.gather(x, 5) is x and sp.all_reduce_sum(x) is x
    model = build(DIT)
    before = model.backbone.blocks[0].self_attention
    enable_sequence_parallel(model, sp)
    assert model.backbone.blocks[0].self_attention is before
