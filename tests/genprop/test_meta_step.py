"""The measuring pieces of genprop.scale.meta_step and genprop.scale.flops.PhaseFlopCounter, on
small ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from genprop.scale.flops import PhaseFlopCounter
from genprop.scale.meta_step import LiveBytesMode, emulated_autocast


def test_live_bytes_counts_new_storages_once_and_releases_them() -> None:
    weight = torch.empty(1000, device="meta")
    with LiveBytesMode([weight]) as mem:
        a = torch.empty(256, device="meta")  # 1 KiB
        view = a[:128]  # same storage: not counted again
        b = weight * 2  # 4000 B
        _ = weight.view(10, 100)  # a view of an existing storage: not counted
        assert mem.live == 1024 + 4000
        del a, b
        assert mem.live == 1024  # the view keeps a's storage alive
        del view
        assert mem.live == 0
    assert mem.peak == 1024 + 4000


def test_emulated_autocast_casts_like_autocast_and_restores() -> None:
    linear, layer_norm = F.linear, F.layer_norm
    w = torch.empty(8, 4, device="meta", requires_grad=True)
    x = torch.empty(2, 4, device="meta")
    with emulated_autocast(torch.bfloat16) as casts:
        y = F.linear(x, w)
        assert y.dtype == torch.bfloat16 and len(casts.casts) == 1  # the weight's cast is cached
        F.linear(x, w)
        assert len(casts.casts) == 1
        assert F.layer_norm(y, (8,)).dtype == torch.float32
    assert F.linear is linear and F.layer_norm is layer_norm
    assert F.linear(x, w).dtype == torch.float32


def test_attention_is_the_efficient_kernel_also_when_recomputed() -> None:
    q = torch.empty(1, 2, 64, 8, device="meta", requires_grad=True)
    counter = PhaseFlopCounter()
    with emulated_autocast(None), counter:
        out = checkpoint(lambda t: F.scaled_dot_product_attention(t, t, t), q, use_reentrant=False)
        counter.phase = "backward"
        out.sum().backward()  # recomputes the attention, then differentiates it
    scores = 2 * 2 * 64 * 64 * 8 * 2  # QK^T and PV: 2 matmuls of 2 FLOPs per multiply-add
    assert counter.flops["forward"] == scores
    assert counter.flops["recompute"] == scores
    # The fused backward recomputes the scores: 5 matmuls where the math path's has 4.
    assert counter.flops["backward"] == scores * 5 // 2
    assert counter.flops["encoders"] == 0


def test_no_grad_forward_work_is_counted_as_encoders() -> None:
    x = torch.empty(4, 16, device="meta")
    w = torch.empty(16, 16, device="meta", requires_grad=True)
    with PhaseFlopCounter() as counter:
        with torch.no_grad():
            x = x @ w
        y = x @ w
    assert counter.flops["encoders"] == counter.flops["forward"] == 2 * 4 * 16 * 16
    assert y.requires_grad
