"""Sharded (``trainer=fsdp``, 2 gloo processes) runs on disk: old checkpoint folders removed, the
export written at the end (after a validation that no checkpoint save follows: FSDP2 leaves the
root unsharded then), any checkpoint folder exported on demand in one process, and
``genprop-plan``'s disk figures against the files (tolerance: see ``disk_checks.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from disk_checks import assert_same_tensors, assert_size, size_on_disk

from genprop.configs import preset
from genprop.modeling.model import GenPropModel
from training.export import main as export_main
from training.plan import plan_from_config
from training.resume import SHARDED_METADATA
from training.train import CONF_DIR, register_resolvers

GENPROP_TRAIN = str(Path(sys.executable).parent / "genprop-train")


@pytest.fixture(scope="module")
def sharded_run(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 steps on 2 ranks, a checkpoint every 2 (keep_last=1, saved before each validation),
    validation every 2, no best checkpoint; the model built on the meta device and read slice
    by slice from a save_pretrained folder."""
    root = tmp_path_factory.mktemp("fsdp")
    torch.manual_seed(0)
    init = GenPropModel.from_config(preset("cpu_test")).save_pretrained(root / "init")
    args = [
        "experiment=tiny_cpu",
        f"data.shards={shard_dir / 'train'}",
        f"data.val_shards={shard_dir / 'val'}",
        f"paths.log_dir={root}",
        "data.num_workers=0",
        "trainer.limit_val_batches=1",
        "trainer.val_check_interval=2",
        "model.preview=false",
        "callbacks.progress=null",
        "logger=csv",
        "trainer=fsdp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_steps=6",
        "callbacks.periodic_checkpoint.every_n_train_steps=2",
        "callbacks.periodic_checkpoint.keep_last=1",
        "callbacks.best_checkpoint=null",
        "model.net._target_=training.fsdp.build_meta_net",
        f"trainer.strategy.init_weights={init}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    proc = subprocess.run(
        [GENPROP_TRAIN, *args], capture_output=True, text=True, env=env, cwd=root, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return root / "tiny_cpu"


@pytest.mark.slow
def test_sharded_run_keeps_newest_folder_and_exports_at_the_end(sharded_run: Path) -> None:
    ckpts = sharded_run / "checkpoints"
    # Steps 2 and 4: folders removed by Lightning through the strategy.
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step00000006.ckpt"]
    assert all((p / SHARDED_METADATA).is_file() for p in ckpts.iterdir())
    assert sorted(p.name for p in (sharded_run / "export").iterdir()) == ["last"]


@pytest.mark.slow
def test_sharded_checkpoint_exports_on_demand_like_the_run(
    sharded_run: Path, tmp_path: Path
) -> None:
    """No overrides: the run's recorded ones; the same tensors as the run's gathered export
    (frozen weights in bf16, trainable in fp32), in one process without a process group."""
    out = tmp_path / "export"
    assert export_main([str(sharded_run / "checkpoints" / "last.ckpt"), str(out)]) == 0
    assert_same_tensors(out, sharded_run / "export" / "last")
    step6 = sharded_run / "checkpoints" / "step00000006.ckpt"
    assert export_main([str(step6), str(tmp_path / "step6")]) == 0
    assert_same_tensors(tmp_path / "step6", out)  # the same step as last.ckpt


@pytest.mark.slow
def test_planned_sharded_sizes_match_the_files(sharded_run: Path) -> None:
    from hydra import compose, initialize_config_dir

    recorded = yaml.safe_load((sharded_run / ".hydra" / "overrides.yaml").read_text())
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*recorded, "+plan.compare_without_checkpointing=false"])
    plan = plan_from_config(cfg).disk
    assert plan is not None and plan.checkpoints_kept == 2 and plan.exports_kept == 1
    for ckpt in (sharded_run / "checkpoints").iterdir():
        assert_size(size_on_disk(ckpt), plan.checkpoint_gb)
    export = sharded_run / "export" / "last" / "model.safetensors"
    assert_size(size_on_disk(export), plan.export_gb)
    assert plan.total_gb is not None
    assert_size(size_on_disk(sharded_run / "checkpoints") + size_on_disk(export), plan.total_gb)
