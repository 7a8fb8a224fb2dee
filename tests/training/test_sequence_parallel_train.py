"""``genprop-train ... trainer=fsdp trainer.sequence_parallel=2``: the real entry point on 2 gloo
processes forming one sequence-parallel group (one data-parallel replica) on a tiny Wan2.2-A14B
folder logs ``train/total`` every step, and (slow) the losses of the same run on one process, step
by step (same batches, same noise: the group shares its replica's seed); the option's checks."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig
from shard_factory import write_shards

from genprop.backbones.wan.pretrained import write_tiny_wan_pipeline
from training.fsdp import GenPropFSDPStrategy
from training.sequence_parallel import check_size, data_parallel_rank, mesh_sizes

GENPROP_TRAIN = str(Path(sys.executable).parent / "genprop-train")
FRAMES, SIZE, STEPS = 5, 32, 2


@pytest.fixture(scope="module")
def wan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sp_train")
    write_shards(root / "shards", shards=1, per_shard=4, frames=FRAMES, size=SIZE)
    return write_tiny_wan_pipeline(root / "wan"), root / "shards"


def _train(pipeline: Path, shards: Path, run_dir: Path, *extra: str) -> dict[int, float]:
    """Run genprop-train; the logged ``train/total`` per step."""
    args = [
        "model=wan",
        f"model.net.pretrained={pipeline}",
        f"model.net.overrides.num_frames={FRAMES}",
        f"model.net.overrides.height={SIZE}",
        f"model.net.overrides.width={SIZE}",
        "model.net.overrides.text.max_tokens=8",
        "model.preview=false",
        f"data.shards={shards}",
        "data.num_workers=0",
        "data.batch_size=1",
        "data.shuffle_buffer=4",
        f"paths.root_dir={run_dir}",
        f"paths.run_dir={run_dir}",
        "trainer=fsdp",
        "trainer.accelerator=cpu",
        f"trainer.max_steps={STEPS}",
        "trainer.log_every_n_steps=1",
        "trainer.limit_val_batches=0",
        "logger=csv",
        "callbacks.progress=null",
        "callbacks.export=null",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    proc = subprocess.run(
        [GENPROP_TRAIN, *args], capture_output=True, text=True, env=env, cwd=run_dir.parent,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    grouped = "sequence parallel: 1 replicas x 2 ranks" in proc.stdout + proc.stderr
    assert grouped == ("trainer.sequence_parallel=2" in extra)
    with open(run_dir / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/total"]) for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def sp_losses(wan_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``train/total`` per step of the run on 2 CPU ranks with ``trainer.sequence_parallel=2``."""
    pipeline, shards = wan_run
    run_dir = tmp_path_factory.mktemp("sp_run")
    return _train(pipeline, shards, run_dir, "trainer.devices=2", "trainer.sequence_parallel=2")


def test_two_cpu_ranks_with_sequence_parallel_log_every_step(sp_losses: dict) -> None:
    assert sorted(sp_losses) == list(range(STEPS))
    assert all(math.isfinite(v) and v > 0 for v in sp_losses.values())


@pytest.mark.slow
def test_one_sequence_parallel_group_logs_the_one_process_losses(
    sp_losses: dict, wan_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """Same batches, noise and updates: after the first step too (the gradients agree)."""
    one = _train(*wan_run, tmp_path / "one", "trainer.devices=1")
    assert sorted(one) == sorted(sp_losses)
    # bf16 compute (trainer=fsdp's policy); the group only reorders sums
    assert sp_losses == pytest.approx(one, rel=1e-3)


def test_trainer_sequence_parallel_reaches_the_strategy(
    compose_cfg: Callable[[list[str]], DictConfig],
) -> None:
    base = ["experiment=tiny_cpu", "trainer=fsdp", "trainer.accelerator=cpu"]
    assert instantiate(compose_cfg(base).trainer.strategy).sequence_parallel == 1
    cfg = compose_cfg([*base, "trainer.sequence_parallel=2"])
    assert isinstance(strategy := instantiate(cfg.trainer.strategy), GenPropFSDPStrategy)
    assert strategy.sequence_parallel == 2


def test_sequence_parallel_checks_are_one_line() -> None:
    assert mesh_sizes(2, 8, 2) == (8, 2) and mesh_sizes(1, 8, 1) == (8, 1)
    with pytest.raises(ValueError, match=r"^trainer.sequence_parallel: 3 does not divide the 8 "
                       r"devices per node \(trainer.devices\)$"):  # fmt: skip
        mesh_sizes(3, 8, 1)
    for bad in (0, -2, "2", 2.0, True):
        with pytest.raises(ValueError, match=r"^trainer.sequence_parallel: expected a positive"):
            check_size(bad)
    with pytest.raises(ValueError, match=r"^trainer.sequence_parallel: expected"):
        GenPropFSDPStrategy(sequence_parallel=0)


def test_data_is_split_by_replica() -> None:
    """The ranks of a sequence-parallel group are one replica (Lightning's sampler arguments)."""
    grouped = SimpleNamespace(
        strategy=SimpleNamespace(distributed_sampler_kwargs={"rank": 1, "num_replicas": 2}),
        global_rank=3,
        world_size=4,
    )
    assert data_parallel_rank(grouped) == (1, 2)
    alone = SimpleNamespace(strategy=SimpleNamespace(), global_rank=0, world_size=1)
    assert data_parallel_rank(alone) == (0, 1)
