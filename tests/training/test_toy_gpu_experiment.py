"""``experiment=toy_gpu_i2v`` / ``experiment=toy_gpu`` (``make demo-gpu``): they compose to the
toy_gpu preset on one GPU, carry the demo's stage-2 recipe, and the sizing written in their YAML
comments (parameters, tokens, FLOPs per step, planned memory, steps for ~4 GPU minutes per stage
at an assumed MFU) is what the repo's own planner computes for them. One GPU test trains 3 steps."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from shard_factory import write_shards

from benchmarks.mfu import PEAK_BF16_TFLOPS
from contracts.jsonfile import read_json_object
from genprop.configs import preset
from genprop.scale.flops import count_parameters
from training.model_factory import build_config
from training.plan import plan_from_config
from training.train import CONF_DIR, resolve_precision, train

STAGES = {"toy_gpu_i2v": "i2v", "toy_gpu": "genprop"}
FRAMES, SIZE = 16, 128  # what `make demo-gpu` writes: clip.frames=16 clip.size=128
ASSUMED_MFU = 0.30  # the assumption the YAML comments state
BUDGET_S = 4 * 60  # GPU seconds per stage the steps are sized for (8 minutes for both)


def _comment(experiment: str) -> str:
    """The YAML file's comment lines, joined into one line with single spaces."""
    text = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()
    lines = [ln.strip().lstrip("#") for ln in text.splitlines() if ln.lstrip().startswith("#")]
    return re.sub(r"\s+", " ", " ".join(lines))


@pytest.mark.parametrize("experiment", sorted(STAGES))
def test_composes_to_the_toy_gpu_preset_on_one_gpu(
    experiment: str, compose_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_cfg([f"experiment={experiment}", "data.shards=x"])
    assert cfg.name == experiment
    assert cfg.model.stage == STAGES[experiment]
    assert cfg.model.net.preset_name == "toy_gpu"
    built = build_config(preset_name=cfg.model.net.preset_name, overrides=cfg.model.net.overrides)
    assert (built.num_frames, built.height, built.width) == (FRAMES, SIZE, SIZE)
    assert (cfg.trainer.accelerator, cfg.trainer.devices) == ("gpu", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_precision(cfg.trainer) == "bf16-mixed"
    assert cfg.data.num_workers == 8
    # Validation and checkpoints happen a few times per run, not every few steps.
    steps = cfg.trainer.max_steps
    assert 3 <= steps / cfg.trainer.val_check_interval <= 8
    assert 3 <= steps / cfg.callbacks.periodic_checkpoint.every_n_train_steps <= 8


def test_stage2_carries_the_demo_recipe(compose_cfg) -> None:
    toy = compose_cfg(["experiment=toy_gpu", "data.shards=x"]).model
    demo = compose_cfg(["experiment=demo_genprop", "data.shards=x"]).model
    assert OmegaConf.to_container(toy.loss_weights) == OmegaConf.to_container(demo.loss_weights)
    assert (toy.loss_weights.mask, toy.loss_weights.grad, toy.loss_weights.mpd) == (2, 1, 1)
    assert toy.train_backbone is True and toy.ema_decay > 0
    assert OmegaConf.to_container(toy.net.overrides) == OmegaConf.to_container(demo.net.overrides)
    ablated = compose_cfg(["experiment=toy_gpu", "ablation=no_mpd", "data.shards=x"])
    assert ablated.name == "toy_gpu_no_mpd" and ablated.model.loss_weights.mpd == 0


def test_both_stages_build_the_same_clip_geometry(compose_cfg) -> None:
    # Stage 2 is initialised from stage 1's export: same model, same clips.
    configs = [
        build_config(preset_name=c.model.net.preset_name, overrides={})
        for c in (compose_cfg([f"experiment={e}", "data.shards=x"]) for e in STAGES)
    ]
    geometry = {(c.num_frames, c.height, c.width, c.codec.patch) for c in configs}
    assert geometry == {(FRAMES, SIZE, SIZE, 4)}


def test_meta_model_has_the_parameters_and_tokens_the_comment_states(compose_cfg) -> None:
    plan = plan_from_config(compose_cfg(["experiment=toy_gpu", "data.shards=x"]))
    counts = count_parameters(preset("toy_gpu"))
    assert plan.backbone_params == counts["backbone"]
    assert plan.trainable_params == counts["total"]  # stage 2 trains everything (backbone too)
    assert plan.tokens == FRAMES * (SIZE // 8) ** 2 == 4096
    comment = _comment("toy_gpu")
    assert f"{plan.backbone_params / 1e6:.1f} M backbone" in comment
    assert f"= {plan.trainable_params / 1e6:.1f} M" in comment
    assert f"{plan.tokens:,} tokens per clip" in comment


@pytest.mark.parametrize("experiment", sorted(STAGES))
def test_steps_fit_the_estimated_four_minutes_per_stage(experiment: str, compose_cfg) -> None:
    cfg = compose_cfg([f"experiment={experiment}", "data.shards=x"])
    plan = plan_from_config(cfg)
    batch, steps = cfg.data.batch_size, cfg.trainer.max_steps
    tflop = plan.flops["model"] / 1e12
    step_s = plan.flops["model"] / (ASSUMED_MFU * PEAK_BF16_TFLOPS["H200"] * 1e12)
    assert 0.9 * BUDGET_S <= steps * step_s <= BUDGET_S  # near the budget, not over
    assert plan.gpu_memory_gb < 0.6 * 80  # fits an 80 GB card with room
    comment = _comment(experiment)
    assert f"{tflop:.1f} TFLOP at batch {batch}" in comment
    assert f"planned peak {plan.gpu_memory_gb:.1f} GB" in comment
    assert f"{math.floor(BUDGET_S / step_s):,} steps in {BUDGET_S} s -> {steps:,} steps" in comment


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_three_stage2_steps_at_toy_gpu_size_on_cuda(tmp_path: Path, compose_cfg) -> None:
    write_shards(tmp_path / "train", shards=2, per_shard=4, frames=FRAMES, size=SIZE)
    write_shards(tmp_path / "val", shards=1, per_shard=2, prefix="val", frames=FRAMES, size=SIZE)
    run = tmp_path / "run"
    cfg = compose_cfg(
        [
            "experiment=toy_gpu",
            f"data.shards={tmp_path / 'train'}",
            f"data.val_shards={tmp_path / 'val'}",
            f"paths.root_dir={run}",
            f"paths.run_dir={run}",
            "data.batch_size=2",
            "data.num_workers=0",
            "data.shuffle_buffer=4",
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1",
            "model.preview_steps=2",
            "callbacks.progress=null",
        ]
    )
    assert resolve_precision(cfg.trainer) == "bf16-mixed"
    metrics = train(cfg)
    assert math.isfinite(metrics["train/total"]) and "val/total" in metrics
    exported = read_json_object(run / "export" / "last" / "config.json", what="export config")
    assert (exported["num_frames"], exported["height"]) == (FRAMES, SIZE)
