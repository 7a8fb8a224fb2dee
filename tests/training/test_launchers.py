"""Launchers: cluster profiles and run folders (composed), DDP on CPU and ``-m`` sweeps (CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from training.launch import check_sweep_overrides, excluded_run_keys
from training.train import CONF_DIR, register_resolvers

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


def _launcher(overrides: list[str]) -> dict:
    """``hydra.launcher`` of a composed config, resolved the way a ``-m`` sweep builds it:
    before Hydra's runtime config exists (no ``${hydra:...}`` may be reached)."""
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg: DictConfig = compose("train", overrides=overrides, return_hydra_config=True)
    return {"launcher": OmegaConf.to_container(cfg.hydra.launcher, resolve=True), "cfg": cfg}


def test_slurm_cpu_profile_takes_resources_from_the_cpu_trainer() -> None:
    got = _launcher(["cluster=slurm_cpu", "experiment=tiny_cpu", "data.shards=x"])
    launcher, cfg = got["launcher"], got["cfg"]
    assert launcher["tasks_per_node"] == 1 and launcher["gpus_per_node"] is None
    assert launcher["mem_gb"] == 4 and launcher["cpus_per_task"] == 1
    assert cfg.trainer.accelerator == "cpu" and cfg.resume == "auto"
    folder = Path(launcher["submitit_folder"])  # absolute, under the launch folder
    assert folder.is_absolute() and folder.parts[-4:-2] == ("tiny_cpu", "multirun")
    assert str(folder).startswith(os.getcwd())


def test_slurm_profile_follows_the_experiments_devices() -> None:
    launcher = _launcher(["cluster=slurm", "experiment=paper", "trainer.devices=4",
                          "data.shards=x"])["launcher"]  # fmt: skip
    assert launcher["tasks_per_node"] == 4 and launcher["gpus_per_node"] == 4
    assert launcher["mem_gb"] == 4 * 64
    multi = _launcher(["cluster=slurm_multinode", "cluster.nodes=3", "trainer=fsdp",
                       "trainer.devices=8", "data.shards=x"])  # fmt: skip
    assert multi["launcher"]["nodes"] == 3 and multi["cfg"].trainer.num_nodes == 3
    assert multi["cfg"].trainer.strategy._target_.endswith("FSDPStrategy")


def test_ablation_names_the_run_and_its_cluster_jobs() -> None:
    got = _launcher(["cluster=slurm_cpu", "experiment=tiny_cpu", "ablation=no_mpd",
                     "data.shards=x"])  # fmt: skip
    launcher, cfg = got["launcher"], got["cfg"]
    assert cfg.name == "tiny_cpu_no_mpd" and launcher["name"] == "genprop-tiny_cpu_no_mpd"
    assert Path(launcher["submitit_folder"]).parts[-4:-2] == ("tiny_cpu_no_mpd", "multirun")


def test_slurm_profile_needs_a_device_count() -> None:
    with pytest.raises(Exception, match=r"trainer\.devices=N"):
        _launcher(["cluster=slurm", "experiment=paper", "data.shards=x"])


def test_run_folders_exclude_only_where_a_run_executes() -> None:
    excluded = excluded_run_keys(CONF_DIR / "train.yaml")
    assert {"cluster", "cluster.partition", "cluster.timeout_min", "resume"} <= set(excluded)
    assert not {"data.num_workers", "trainer.devices", "trainer.accelerator", "cluster.nodes",
                "experiment", "ablation", "trainer.max_steps"} & set(excluded)  # fmt: skip
    check_sweep_overrides(["-m", "cluster.partition=gpu", "trainer.max_steps=1,2"], excluded)
    check_sweep_overrides(["data.num_workers=0,2", "hydra/launcher=submitit_local"], excluded)
    for swept in ("cluster.partition=a,b", "cluster=slurm,slurm_cpu", "resume=auto,null"):
        with pytest.raises(ValueError, match="cannot be swept"):
            check_sweep_overrides([swept], excluded)


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


@pytest.mark.slow  # ~25 s on 2 cores (two runs); test_ablation_names_the_run_... is the fast check
def test_local_sweep_over_ablations(shard_dir: Path, tmp_path: Path) -> None:
    # Each point runs under its own name (<experiment>_<ablation>), in a folder named by the point.
    ablations = ["ablation=no_mpd,gate", "trainer.max_steps=1"]
    _run(["-m", *_cli_overrides(shard_dir, tmp_path), *ablations], tmp_path)
    for ablation in ("no_mpd", "gate"):
        sweep = tmp_path / f"tiny_cpu_{ablation}" / "multirun"
        (run,) = [p for p in sweep.iterdir() if p.name.startswith(f"ablation={ablation},")]
        exported = json.loads((run / "export" / "last" / "config.json").read_text())
        assert exported["content_gate"] is (ablation == "gate")


def test_sweep_submitit_local_launcher(shard_dir: Path, tmp_path: Path) -> None:
    # cluster=submitit_local from a fresh folder without paths.* overrides: the launcher's
    # submitit_folder resolves before Hydra's runtime config exists.
    args = [
        "-m",
        *[o for o in _cli_overrides(shard_dir, tmp_path) if not o.startswith("paths.")],
        "cluster=submitit_local",
        "hydra.launcher.timeout_min=5",
        "model.ema_decay=0.9,0.99",
        "trainer.max_steps=1",
    ]
    _run(args, tmp_path)
    sweep = tmp_path / "outputs" / "train" / "tiny_cpu" / "multirun"
    runs = sorted(p for p in sweep.iterdir() if "model.ema_decay=" in p.name)
    assert [("ema_decay=0.9," in p.name, "ema_decay=0.99," in p.name) for p in runs] == [
        (True, False),
        (False, True),
    ]
    for run in runs:
        assert (run / "export" / "last" / "model.safetensors").is_file()
    assert any((sweep / ".submitit").iterdir())  # jobs went through submitit
