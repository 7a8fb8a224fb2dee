"""``trainer=fsdp`` through Lightning: config composition, and the real entry point on 2 gloo
processes (slow) writing a sharded checkpoint that resumes on 1 process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.distributed.checkpoint import FileSystemReader

from genprop.configs import preset
from genprop.modeling.model import GenPropModel
from training.fsdp import GenPropFSDPStrategy
from training.resume import SHARDED_METADATA

GENPROP_TRAIN = str(Path(sys.executable).parent / "genprop-train")


def test_trainer_fsdp_composes_to_the_sharded_strategy(
    compose_cfg: Callable[[list[str]], DictConfig],
) -> None:
    cfg = compose_cfg(["experiment=tiny_cpu", "trainer=fsdp", "trainer.accelerator=cpu"])
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, GenPropFSDPStrategy)
    assert strategy.compute_dtype == torch.bfloat16 and strategy.frozen_dtype == torch.bfloat16
    assert strategy.activation_checkpointing
    assert cfg.trainer.precision == "32-true"  # mixed precision comes from the sharding plan


def test_strategy_rejects_unknown_dtype() -> None:
    with pytest.raises(ValueError, match=r"trainer.strategy.compute_dtype"):
        GenPropFSDPStrategy(compute_dtype="int8")


def _train(shard_dir: Path, log_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        "experiment=tiny_cpu",
        f"data.shards={shard_dir / 'train'}",
        f"data.val_shards={shard_dir / 'val'}",
        f"paths.log_dir={log_dir}",
        "data.num_workers=0",
        "trainer.limit_val_batches=1",
        "trainer.val_check_interval=2",
        "model.preview=false",
        "callbacks.progress=null",
        "callbacks.export=null",
        "logger=csv",
        "trainer=fsdp",
        "trainer.accelerator=cpu",
        "callbacks.periodic_checkpoint.every_n_train_steps=2",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    proc = subprocess.run(
        [GENPROP_TRAIN, *args], capture_output=True, text=True, env=env, cwd=log_dir, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_genprop_train_fsdp_two_processes_then_resume_on_one(
    shard_dir: Path, tmp_path: Path
) -> None:
    """Meta-device model loaded slice by slice from a folder; 2 ranks, then resumed on 1."""
    torch.manual_seed(0)
    folder = GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "init")
    meta_init = [
        "model.net._target_=training.fsdp.build_meta_net",
        f"trainer.strategy.init_weights={folder}",
    ]
    _train(shard_dir, tmp_path, *meta_init, "trainer.devices=2", "trainer.max_steps=2")
    last = tmp_path / "tiny_cpu" / "checkpoints" / "last.ckpt"
    assert (last / SHARDED_METADATA).is_file()
    keys = set(FileSystemReader(last).read_metadata().state_dict_metadata)
    assert any(k.startswith("state_dict.net.content_encoder.") for k in keys)
    assert any(k.startswith("ema.content_encoder.") for k in keys)
    assert not any(".backbone." in k for k in keys)  # frozen backbone not in the checkpoint
    saved = torch.load(last / SHARDED_METADATA, weights_only=True)
    assert saved["global_step"] == 2

    resume = ["trainer.devices=1", "trainer.max_steps=4", "resume=auto"]
    _train(shard_dir, tmp_path, *meta_init, *resume)
    saved = torch.load(last / SHARDED_METADATA, weights_only=True)
    assert saved["global_step"] == 4
