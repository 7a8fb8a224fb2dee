"""Checkpoints load with ``weights_only=True``; a crafted one is refused before anything runs.

The module fixture is a real two-phase run: N steps, then ``resume=auto`` to 2N in the same run
folder (Lightning's own resume, ``trainer.fit(weights_only=True)``); its CSV log must keep the
rows of both phases.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from shard_factory import tiny_overrides

from genprop.configs import GenPropConfig
from training.safe_checkpoint import UnsafeCheckpointError, check_weights_only, plain_data
from training.train import _hydra_entry, train

N = 2


class _CreatesFile:
    """Unpickling this object opens (creates) a file: the stand-in for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _overrides(shard_dir: Path, run: Path, steps: int) -> list[str]:
    return [
        *tiny_overrides(shard_dir, run),
        f"trainer.max_steps={steps}",
        f"data.epoch_batches={N}",
        f"trainer.val_check_interval={N}",
        f"callbacks.periodic_checkpoint.every_n_train_steps={N}",
        "trainer.log_every_n_steps=1",
        "logger=csv",
    ]


@pytest.fixture(scope="module")
def two_phase_run(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hydra import compose, initialize_config_dir

    from training.train import CONF_DIR, register_resolvers

    register_resolvers()
    run = tmp_path_factory.mktemp("run")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        train(compose("train", overrides=_overrides(shard_dir, run, N)))
        train(compose("train", overrides=[*_overrides(shard_dir, run, 2 * N), "resume=auto"]))
    return run


def test_csv_log_keeps_the_rows_of_both_phases(two_phase_run: Path) -> None:
    with open(two_phase_run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    steps = sorted({int(r["step"]) for r in rows if r["train/total"]})
    assert steps == list(range(2 * N))
    assert sum(1 for r in rows if r["val/total"]) == 2  # one validation per phase


def test_checkpoint_is_plain_data(two_phase_run: Path) -> None:
    ckpt = torch.load(two_phase_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 * N
    assert ckpt["ema"]["num_updates"] == 2 * N and ckpt["ema"]["shadow"]
    assert ckpt["optimizer_states"][0]["state"]  # AdamW moments survive weights_only
    assert isinstance(ckpt["hyper_parameters"]["loss_weights"], dict)  # not a DictConfig
    config = GenPropConfig.from_dict(json.loads(ckpt["genprop_config"]))
    assert config.num_frames == 4


def test_crafted_checkpoint_is_refused_and_runs_nothing(
    shard_dir: Path, tmp_path: Path, compose_cfg, capsys
) -> None:
    marker = tmp_path / "created_by_unpickling"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "payload": _CreatesFile(marker)}, last)
    with pytest.raises(UnsafeCheckpointError, match=r"last\.ckpt: refusing to resume"):
        check_weights_only(last)
    cfg = compose_cfg([*_overrides(shard_dir, run, N), "resume=auto"])
    with pytest.raises(SystemExit) as info:
        _hydra_entry(cfg)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("genprop-train: error:") and "last.ckpt" in err[-1]
    assert not marker.exists()
    last.write_bytes(b"truncated")
    with pytest.raises(UnsafeCheckpointError):
        check_weights_only(last)
    assert not marker.exists()


def test_plain_data_converts_containers_and_refuses_objects() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"a": [1, 2.5, {"b": "x"}], "p": None})
    assert plain_data(cfg) == {"a": [1, 2.5, {"b": "x"}], "p": None}
    assert plain_data({"path": Path("/x"), "t": (1, 2)}) == {"path": "/x", "t": (1, 2)}
    with pytest.raises(TypeError, match=r"hp\.bad: a object cannot be stored"):
        plain_data({"bad": object()}, "hp")
