"""The real console entry point in subprocesses: DDP on CPU (gloo) and ``-m`` sweeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

GENPROP_TRAIN = str(Path(sys.executable).parent / "genprop-train")


def _cli_overrides(shard_dir: Path, log_dir: Path) -> list[str]:
    return [
        "experiment=tiny_cpu",
        f"data.shards={shard_dir / 'train'}",
        f"data.val_shards={shard_dir / 'val'}",
        f"paths.log_dir={log_dir}",
        "data.num_workers=0",
        "trainer.limit_val_batches=1",
        "trainer.val_check_interval=2",
        "model.preview=false",
        "callbacks.progress=null",
        "logger=csv",
    ]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    proc = subprocess.run(
        [GENPROP_TRAIN, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_ddp_cpu_two_processes(shard_dir: Path, tmp_path: Path) -> None:
    args = [
        *_cli_overrides(shard_dir, tmp_path),
        "trainer=ddp_cpu",
        "trainer.max_steps=2",
        "callbacks.periodic_checkpoint.every_n_train_steps=2",
    ]
    proc = _run(args, tmp_path)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr  # two gloo processes
    run_dir = tmp_path / "tiny_cpu"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2
    assert (run_dir / "export" / "last" / "model.safetensors").is_file()


def test_local_sweep_basic_launcher(shard_dir: Path, tmp_path: Path) -> None:
    _run(["-m", *_cli_overrides(shard_dir, tmp_path), "trainer.max_steps=1,2"], tmp_path)
    sweep = tmp_path / "tiny_cpu" / "multirun"
    for steps in (1, 2):
        # one deterministic sub-directory per point, named by its overrides
        (run,) = [p for p in sweep.iterdir() if f"trainer.max_steps={steps}," in p.name]
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
        assert ckpt["global_step"] == steps
        assert (run / "export" / "last" / "config.json").is_file()


def test_sweep_submitit_local_launcher(shard_dir: Path, tmp_path: Path) -> None:
    args = [
        "-m",
        *_cli_overrides(shard_dir, tmp_path),
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "model.ema_decay=0.9,0.99",
        "trainer.max_steps=1",
    ]
    _run(args, tmp_path)
    sweep = tmp_path / "tiny_cpu" / "multirun"
    runs = sorted(p for p in sweep.iterdir() if "model.ema_decay=" in p.name)
    assert [("ema_decay=0.9," in p.name, "ema_decay=0.99," in p.name) for p in runs] == [
        (True, False),
        (False, True),
    ]
    for run in runs:
        assert (run / "export" / "last" / "model.safetensors").is_file()
    assert any((sweep / ".submitit").iterdir())  # jobs went through submitit
