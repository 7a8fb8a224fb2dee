"""Unreadable data: bounded failures with one clear error, corrupt counts in the logged metrics."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
from shard_factory import tiny_overrides, write_shards

from training.datamodule import ShardDataModule
from training.shard_stream import DataPipelineError, ShardStream
from training.train import _hydra_entry, train


@pytest.fixture
def unreadable(tmp_path: Path) -> Path:
    """Three .tar files that are not tar archives."""
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"bad-{i:06d}.tar").write_bytes(b"not a tar archive" * 64)
    return folder


def test_stream_stops_after_bounded_consecutive_failures(unreadable: Path, caplog) -> None:
    urls = sorted(str(p) for p in unreadable.glob("*.tar"))
    stream = ShardStream(
        urls=urls, batch_size=2, resampled=True, epoch_batches=5, max_consecutive_failures=10
    )
    limit = r"10 unreadable .*max_consecutive_failures=10"
    with (
        caplog.at_level(logging.WARNING, logger="training.shard_stream"),
        pytest.raises(DataPipelineError, match=limit),
    ):
        next(iter(stream))
    assert len(caplog.records) == 9  # warnings are bounded by the limit, too


def test_good_samples_reset_the_count(tmp_path: Path) -> None:
    keys = tuple(f"train{i:06d}" for i in (1, 2, 4, 5))  # never 3 bad samples in a row
    write_shards(tmp_path, shards=1, per_shard=8, corrupt_keys=keys)
    stream = ShardStream(
        urls=[str(tmp_path / "train-000000.tar")],
        batch_size=2,
        resampled=False,
        epoch_batches=None,
        max_consecutive_failures=3,
    )
    batches = list(stream)
    assert sum(len(b["key"]) for b in batches) == 4
    assert sum(int(b["skipped"]) for b in batches) == 4


@pytest.mark.parametrize("resampled", [True, False])
def test_loader_worker_error_is_one_line(unreadable: Path, resampled: bool) -> None:
    dm = ShardDataModule(
        shards=unreadable,
        batch_size=2,
        num_workers=1,
        resampled=resampled,
        epoch_batches=4 if resampled else None,
        max_consecutive_failures=5,
        pin_memory=False,
    )
    with pytest.raises(DataPipelineError) as info:
        next(iter(dm.train_dataloader()))
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert message.startswith("data.shards:") and "bad-00000" in message


def test_genprop_train_with_no_readable_shard_exits_with_one_line(
    unreadable: Path, tmp_path: Path, compose_cfg, capsys
) -> None:
    run = tmp_path / "run"
    cfg = compose_cfg(
        [
            *tiny_overrides(unreadable.parent, run),
            f"data.shards={unreadable}",
            "data.val_shards=null",
            "data.num_workers=1",
            "data.max_consecutive_failures=20",
            "trainer.max_steps=2",
        ]
    )
    with pytest.raises(SystemExit) as info:
        _hydra_entry(cfg)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("genprop-train: error: data.shards: 20 unreadable")


def test_corrupt_sample_count_is_a_logged_metric(tmp_path: Path, compose_cfg) -> None:
    keys = ("train000001", "train000007")
    write_shards(tmp_path / "shards" / "train", shards=2, per_shard=6, corrupt_keys=keys)
    write_shards(tmp_path / "shards" / "val", shards=1, per_shard=2, prefix="val")
    run = tmp_path / "run"
    cfg = compose_cfg(
        [
            *tiny_overrides(tmp_path / "shards", run),
            "data.num_workers=1",  # the count crosses the worker process boundary
            "data.resampled=false",
            "data.epoch_batches=null",
            "trainer.max_steps=5",
            "trainer.log_every_n_steps=1",
            "trainer.val_check_interval=5",
            "callbacks.periodic_checkpoint.every_n_train_steps=5",
            "logger=csv",
        ]
    )
    train(cfg)
    with open(run / "csv" / "metrics.csv") as f:
        # Rows of other metrics (validation) leave the column empty.
        counts = [float(v) for r in csv.DictReader(f) if (v := r["data/corrupt_samples"])]
    assert counts and max(counts) == 2.0
