"""LR schedule, EMA, RNG capture, resume-checkpoint lookup, the module's loss and preview."""

from __future__ import annotations

import io
import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genprop.losses import training_losses
from genprop.video_batch import VideoBatch
from training.ema import ParameterEMA
from training.model_factory import build_model
from training.module import GenPropLitModule
from training.preview import generate_preview
from training.resume import (
    capture_rng_state,
    find_resume_checkpoint,
    restore_rng_state,
    step_seed,
)
from training.schedule import warmup_cosine, warmup_cosine_factor


def test_warmup_then_cosine() -> None:
    f = [
        warmup_cosine_factor(s, warmup_steps=4, total_steps=12, min_lr_ratio=0.1) for s in range(14)
    ]
    assert f[0] == pytest.approx(0.2) and f[3] == pytest.approx(0.8)
    assert all(a < b for a, b in itertools.pairwise(f[:5]))  # linear rise
    assert f[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(f[4:13]))  # cosine fall
    assert f[12] == pytest.approx(0.1) and f[13] == pytest.approx(0.1)
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=5e-5)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=12)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-5)
    state = sched.state_dict()  # picklable lambda object, stored as its fields
    assert state["lr_lambdas"][0]["warmup_steps"] == 4
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(opt, warmup_steps=-1, total_steps=12)


def test_ema_tracks_trainable_only_and_round_trips() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].requires_grad_(False)
    ema = ParameterEMA(model, decay=0.5)
    assert set(ema.shadow) == {"1.weight", "1.bias"}
    start = model[1].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)
    ema.update(model)  # warm-up decay min(0.5, 1/10) = 0.1
    assert torch.allclose(ema.shadow["1.weight"], start + 0.9)
    with ema.swapped_in(model):
        assert torch.allclose(model[1].weight, start + 0.9)
    assert torch.allclose(model[1].weight, start + 1.0)
    other = ParameterEMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and torch.equal(other.shadow["1.weight"], ema.shadow["1.weight"])
    model[0].requires_grad_(True)
    with pytest.raises(ValueError, match="tracked parameters differ"):
        ParameterEMA(model).load_state_dict(ema.state_dict())


def test_rng_state_round_trip() -> None:
    state = capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    buf = io.BytesIO()  # the state must survive torch.load(weights_only=True)
    torch.save(state, buf)
    buf.seek(0)
    restore_rng_state(torch.load(buf, weights_only=True))
    assert torch.equal(torch.rand(3), a[0])


def test_step_seed_distinct() -> None:
    seeds = {step_seed(0, s, r) for s in range(100) for r in range(4)}
    assert len(seeds) == 400 and step_seed(1, 0, 0) != step_seed(0, 0, 0)


def test_find_resume_checkpoint(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    assert find_resume_checkpoint(None, ckpts) is None
    assert find_resume_checkpoint("auto", ckpts) is None
    ckpts.mkdir()
    (ckpts / "last.ckpt").write_bytes(b"x")
    assert find_resume_checkpoint("auto", ckpts) == ckpts / "last.ckpt"
    with pytest.raises(FileExistsError, match="resume=auto"):
        find_resume_checkpoint(None, ckpts)
    with pytest.raises(FileNotFoundError, match=r"resume='nope\.ckpt'"):
        find_resume_checkpoint("nope.ckpt", ckpts)
    assert find_resume_checkpoint(str(ckpts / "last.ckpt"), ckpts) == ckpts / "last.ckpt"


@pytest.mark.parametrize(
    ("option", "value"), [("preview_steps", 0), ("preview_guidance", float("nan"))]
)
def test_bad_preview_sampling_options_are_named(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"model\.{option}: expected"):
        GenPropLitModule(
            net=build_model(preset_name="cpu_test"), optimizer=torch.optim.AdamW, **{option: value}
        )


def _pixel_batch(b: int = 1, t: int = 4, size: int = 32) -> VideoBatch:
    """A seeded cpu_test pixel batch."""
    g = torch.Generator().manual_seed(0)
    return VideoBatch(
        target=torch.rand(b, t, 3, size, size, generator=g) * 2 - 1,
        first=torch.rand(b, 3, size, size, generator=g) * 2 - 1,
        sce=torch.rand(b, t, 3, size, size, generator=g) * 2 - 1,
        mask=(torch.rand(b, t, size, size, generator=g) > 0.5).float(),
        task=torch.tensor([1] * b),
        prompt=["a prompt"] * b,
    )


def test_module_losses_are_the_library_loss_and_a_dict_batch_is_refused() -> None:
    module = GenPropLitModule(net=build_model(preset_name="cpu_test"), optimizer=torch.optim.AdamW)
    batch = _pixel_batch()
    got = module.compute_losses(batch, seed=3, step=5)
    want = training_losses(
        module.net,
        batch,
        stage="genprop",
        weights=module.weights,
        cfg_dropout=module.cfg_dropout,
        generator=torch.Generator().manual_seed(3),
        expert_seed=step_seed(module.seed, 5, 0),
    )
    assert got.keys() == want.keys()
    for k in got:
        assert torch.equal(got[k], want[k]), k
    as_dict = {"target": batch.target, "first": batch.first, "sce": batch.sce}
    with pytest.raises(TypeError, match="expected a VideoBatch or EncodedBatch, got dict"):
        module.training_step(as_dict, 0)


@pytest.mark.parametrize("stage", ["genprop", "i2v"])
def test_preview_grid_of_a_typed_batch(stage: str) -> None:
    net = build_model(preset_name="cpu_test")
    batch = _pixel_batch(b=2)
    if stage == "i2v":  # stage-1 batches need no SCE video, mask or task
        batch = VideoBatch(target=batch.target, first=batch.first)
    grid = generate_preview(net, batch, stage=stage, steps=1, guidance=1.0, seed=0)
    assert grid.dtype == torch.uint8 and grid.shape == (4, 3, 32, 5 * 32)
