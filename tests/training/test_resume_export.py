"""Exact resume (N steps vs N/2 + new process resuming to N), export folder, stage-2 init.

Tolerance of the loss comparison: ``rtol=1e-5``. After a resume at a data-epoch boundary the
weights, optimizer/scheduler state, EMA, per-step noise (seeded by (seed, step, rank)) and the
batches (stream seeded by (seed, step, rank, worker)) are all identical, so on CPU the losses come
out bit-identical in practice; the small tolerance only absorbs float reduction-order differences
a different process could introduce (thread pools, allocator alignment).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from shard_factory import tiny_overrides

from genprop.modeling.model import GenPropModel
from training.model_factory import build_model
from training.module import GenPropLitModule
from training.train import train

N = 6  # total steps; the interrupted run stops at N // 2 (a checkpoint and a data-epoch boundary)


def _overrides(shard_dir: Path, run_dir: Path, max_steps: int, version: str) -> list[str]:
    return [
        "experiment=tiny_cpu",
        *tiny_overrides(shard_dir, run_dir),
        f"trainer.max_steps={max_steps}",
        f"model.scheduler.total_steps={N}",  # same schedule whether or not the run is cut short
        "model.scheduler.warmup_steps=2",
        f"data.epoch_batches={N // 2}",
        f"trainer.val_check_interval={N // 2}",
        f"callbacks.periodic_checkpoint.every_n_train_steps={N // 2}",
        "trainer.log_every_n_steps=1",
        "logger=many_loggers",
        f"logger.csv.version={version}",
    ]


def _losses(run_dir: Path, version: str) -> dict[int, float]:
    with open(run_dir / "csv" / version / "metrics.csv") as f:
        return {
            int(r["step"]): float(r["train/total"]) for r in csv.DictReader(f) if r["train/total"]
        }


@pytest.fixture(scope="module")
def runs(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run A: N steps straight. Run B: N/2 steps, then a new process with resume=auto to N."""
    from hydra import compose, initialize_config_dir

    from training.train import CONF_DIR, register_resolvers

    register_resolvers()
    a, b = tmp_path_factory.mktemp("run_a"), tmp_path_factory.mktemp("run_b")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        train(compose("train", overrides=_overrides(shard_dir, a, N, "full")))
        train(compose("train", overrides=_overrides(shard_dir, b, N // 2, "part1")))
    cmd = [
        sys.executable,
        "-m",
        "training.train",
        *_overrides(shard_dir, b, N, "part2"),
        "resume=auto",
        f"hydra.run.dir={b}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"a": a, "b": b}


def test_resume_matches_uninterrupted_run(runs: dict[str, Path]) -> None:
    full = _losses(runs["a"], "full")
    part1, part2 = _losses(runs["b"], "part1"), _losses(runs["b"], "part2")
    assert sorted(full) == list(range(N))
    assert sorted(part1) == list(range(N // 2)) and sorted(part2) == list(range(N // 2, N))
    resumed = part1 | part2
    got = torch.tensor([resumed[s] for s in range(N)])
    want = torch.tensor([full[s] for s in range(N)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0.0)
    ckpt_a = torch.load(runs["a"] / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt_b = torch.load(runs["b"] / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt_a["global_step"] == ckpt_b["global_step"] == N
    assert ckpt_b["ema"]["num_updates"] == N
    for name, value in ckpt_a["ema"]["shadow"].items():
        torch.testing.assert_close(ckpt_b["ema"]["shadow"][name], value, rtol=1e-5, atol=1e-7)


def test_export_is_loadable_and_holds_ema_weights(runs: dict[str, Path]) -> None:
    export = runs["a"] / "export" / "last"
    model = GenPropModel.from_pretrained(export)
    assert model.config.num_frames == 4 and model.config.height == 32
    ema = torch.load(runs["a"] / "checkpoints" / "last.ckpt", weights_only=True)["ema"]["shadow"]
    saved = load_file(str(export / "model.safetensors"))
    name = next(n for n in ema if n.startswith("content_encoder."))
    torch.testing.assert_close(saved[name.removeprefix("net.")], ema[name])
    assert (runs["a"] / "export" / "best" / "config.json").is_file()


def test_validation_preview_logged_to_tensorboard(runs: dict[str, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(runs["a"] / "tensorboard"))
    acc.Reload()
    assert "val/preview" in acc.Tags()["images"]
    image = acc.Images("val/preview")[0]
    assert image.width == 5 * 32 and image.height == 4 * 32  # 5 columns, one row per frame
    scalars = set(acc.Tags()["scalars"])
    assert {"train/total", "train/mask", "optim/lr", "optim/grad_norm", "val/total"} <= scalars
    assert {"perf/samples_per_sec", "perf/data_wait_frac"} <= scalars


def test_stage2_initialised_from_stage1_export(tmp_path: Path) -> None:
    stage1 = build_model(preset_name="cpu_test")
    torch.nn.init.normal_(stage1.backbone.blocks[0].qkv.weight)  # differ from a fresh init
    stage1.save_pretrained(tmp_path / "stage1")
    module = GenPropLitModule(
        net=build_model(preset_name="cpu_test"),
        optimizer=torch.optim.AdamW,
        init_from=str(tmp_path / "stage1"),
    )
    torch.testing.assert_close(
        module.net.backbone.state_dict()["blocks.0.qkv.weight"],
        stage1.backbone.state_dict()["blocks.0.qkv.weight"],
    )
    assert not any(p.requires_grad for p in module.net.backbone.parameters())
    with pytest.raises(FileNotFoundError, match=r"model\.init_from"):
        GenPropLitModule(net=stage1, optimizer=torch.optim.AdamW, init_from=str(tmp_path / "x"))
