"""``genprop-train model=wan model.net.pretrained=FOLDER``: the real Hydra config on a tiny random
Wan2.x I2V diffusers folder (5x32x32 clips), one fast_dev_run step, export loads back."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra.utils import instantiate
from safetensors.torch import load_file
from shard_factory import tiny_overrides, write_shards

from genprop import GenPropModel
from genprop.backbones.wan.pretrained import wan_config, write_tiny_wan_pipeline
from training.model_factory import build_config
from training.train import train

FRAMES, SIZE = 5, 32  # 4k+1 frames (Wan VAE), multiples of 16 pixels (VAE 8x, patch 2)


@pytest.fixture(scope="module")
def wan_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("wan_training")
    write_shards(root / "shards" / "train", shards=1, per_shard=4, frames=FRAMES, size=SIZE)
    write_shards(
        root / "shards" / "val", shards=1, per_shard=2, prefix="val", frames=FRAMES, size=SIZE
    )
    return write_tiny_wan_pipeline(root / "tiny-wan"), root / "shards"


def _wan_overrides(pipeline: Path, shards: Path, run_dir: Path) -> list[str]:
    preset = "model.net.preset_name="  # a pretrained backbone has no preset
    base = [o for o in tiny_overrides(shards, run_dir) if not o.startswith(preset)]
    return [
        *base,
        f"model.net.pretrained={pipeline}",
        f"model.net.overrides.num_frames={FRAMES}",
        f"model.net.overrides.height={SIZE}",
        f"model.net.overrides.width={SIZE}",
        "model.net.overrides.text.max_tokens=8",
        "debug=fdr",  # trainer.fast_dev_run=true
    ]


def _check_export(run_dir: Path, pipeline: Path) -> None:
    export = run_dir / "export" / "last"
    saved = load_file(str(export / "model.safetensors"))
    assert saved and not any(k.startswith("text_encoder.") for k in saved)
    loaded = GenPropModel.from_pretrained(export, allowed_roots=[pipeline])
    assert loaded.config.backbone.path == str(pipeline.resolve())
    assert loaded.config.backbone.transformer_config["num_layers"] == 3


def test_model_wan_fast_dev_run_and_export(wan_setup, tmp_path: Path, compose_cfg) -> None:
    pipeline, shards = wan_setup
    cfg = compose_cfg(["model=wan", *_wan_overrides(pipeline, shards, tmp_path)])
    assert cfg.model.net.preset_name is None and cfg.model.net.overrides.sce_blocks is None
    metrics = train(cfg)
    assert math.isfinite(metrics["train/total"]) and metrics["train/total"] > 0
    assert math.isfinite(metrics["val/total"])
    _check_export(tmp_path, pipeline)


def test_wan_paper_recipe(wan_setup, tmp_path: Path, compose_cfg) -> None:
    pipeline, shards = wan_setup
    recipe = compose_cfg(
        ["experiment=wan_paper", f"model.net.pretrained={pipeline}", "data.shards=x"]
    )
    m = recipe.model
    assert m.net.pretrained == str(pipeline) and m.net.gradient_checkpointing is True
    assert (m.net.overrides.num_frames, m.net.overrides.height, m.net.overrides.width) == (
        33,
        480,
        832,
    )
    assert recipe.data.num_frames == 33 and recipe.trainer.accelerator == "gpu"
    assert (m.loss_weights.mask, m.loss_weights.grad, m.loss_weights.mpd) == (2.0, 1.0, 1.0)
    assert m.optimizer.lr == 5e-5 and m.stage == "genprop" and m.train_backbone is False
    # Sharded by default: FSDP2 with bf16 compute from the sharding plan (Lightning runs 32-true).
    assert recipe.trainer.strategy._target_ == "training.fsdp.GenPropFSDPStrategy"
    assert recipe.trainer.strategy.compute_dtype == "bf16" and recipe.trainer.precision == "32-true"
    # The same recipe at the tiny geometry on CPU: trains the SCE with a frozen, checkpointed Wan.
    cfg = compose_cfg(
        ["experiment=wan_paper", *_wan_overrides(pipeline, shards, tmp_path), "model.preview=false"]
    )
    assert cfg.data.num_frames == FRAMES
    module = instantiate(cfg.model)
    assert module.net.backbone.gradient_checkpointing is True
    assert not any(p.requires_grad for p in module.net.backbone.parameters())
    assert math.isfinite(train(cfg)["train/total"])
    _check_export(tmp_path, pipeline)


def test_pretrained_overrides_are_checked(wan_setup) -> None:
    pipeline, _ = wan_setup
    cfg = build_config(
        preset_name=None, pretrained=str(pipeline), overrides={"num_frames": 5, "height": 32}
    )
    assert cfg == wan_config(pipeline, num_frames=5, height=32)
    with pytest.raises(
        ValueError, match=r"field 'codec' cannot be set with model\.net\.pretrained"
    ):
        build_config(preset_name=None, pretrained=str(pipeline), overrides={"codec": {"patch": 2}})
    with pytest.raises(ValueError, match="exactly one of preset_name"):
        build_config(preset_name="cpu_test", pretrained=str(pipeline))
    with pytest.raises(FileNotFoundError, match=r"shards/transformer/config\.json: missing"):
        build_config(preset_name=None, pretrained=str(pipeline.parent / "shards"))
