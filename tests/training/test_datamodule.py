"""ShardDataModule / ShardStream: splitting, determinism, task weights, corrupt samples."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from lightning.pytorch.core.hooks import DataHooks
from shard_factory import truncate_tar, write_shards

from contracts.shard_spec import expand_shards
from contracts.tasks import TASKS
from genprop.video_batch import VideoBatch
from training.batch import to_model_batch
from training.datamodule import ShardDataModule
from training.shard_stream import CorruptSampleError, ShardStream


def _keys(loader) -> list[str]:
    return [k for batch in loader for k in batch["key"]]


def test_expand_shards_patterns_folders_and_errors(shard_dir: Path) -> None:
    folder = shard_dir / "train"
    assert len(expand_shards(str(folder))) == 4
    pattern = f"{folder}/train-{{000000..000001}}.tar"
    assert [Path(u).name for u in expand_shards(pattern)] == [
        "train-000000.tar",
        "train-000001.tar",
    ]
    assert expand_shards(["https://host/x-{0..2}.tar"]) == [
        f"https://host/x-{i}.tar" for i in range(3)
    ]
    with pytest.raises(FileNotFoundError, match=r"data.shards: no shard at .*missing-000000.tar"):
        expand_shards(f"{folder}/missing-{{000000..000001}}.tar")


def test_split_by_worker_reads_each_sample_once(shard_dir: Path) -> None:
    dm = ShardDataModule(
        shards=shard_dir / "train",
        batch_size=1,
        num_workers=2,
        resampled=False,
        epoch_batches=None,
        shuffle_buffer=0,
        pin_memory=False,
    )
    keys = _keys(dm.train_dataloader())
    assert len(keys) == 24
    assert len(set(keys)) == 24  # no duplicates across the 2 workers


def test_split_by_node_partitions_shards(shard_dir: Path) -> None:
    urls = expand_shards(shard_dir / "train")
    seen = []
    for rank in range(2):
        stream = ShardStream(
            urls=urls, batch_size=1, resampled=False, epoch_batches=None, rank=rank, world_size=2
        )
        seen.append({k for b in stream for k in b["key"]})
    assert len(seen[0]) == len(seen[1]) == 12
    assert not seen[0] & seen[1]


def test_resampled_stream_is_seeded_by_step(shard_dir: Path) -> None:
    urls = expand_shards(shard_dir / "train")

    def keys(step: int, seed: int = 0) -> list[str]:
        s = ShardStream(
            urls=urls, batch_size=2, resampled=True, epoch_batches=5, seed=seed, shuffle_buffer=4
        )
        s.start_step = step
        return [k for b in s for k in b["key"]]

    assert keys(10) == keys(10)
    assert keys(10) != keys(11)
    assert keys(10) != keys(10, seed=1)
    assert len(keys(3)) == 10  # with_epoch: exactly epoch_batches batches


def test_task_weights_drop_a_task(shard_dir: Path) -> None:
    urls = expand_shards(shard_dir / "train")
    weights = {t: 1.0 for t in TASKS} | {"tracking": 0.0}
    s = ShardStream(
        urls=urls, batch_size=1, resampled=False, epoch_batches=None, task_weights=weights
    )
    tasks = [TASKS[int(b["task"][0])] for b in s]
    assert "tracking" not in tasks
    n_tracking = sum(TASKS[n % len(TASKS)] == "tracking" for n in range(24))
    assert len(tasks) == 24 - n_tracking
    with pytest.raises(ValueError, match=r"data\.task_weights: unknown tasks"):
        ShardStream(
            urls=urls,
            batch_size=1,
            resampled=False,
            epoch_batches=None,
            task_weights={"segmentation": 1.0},
        )


def test_batch_conventions(shard_dir: Path) -> None:
    dm = ShardDataModule(
        shards=shard_dir / "val", batch_size=3, num_workers=0, resampled=False, epoch_batches=None
    )
    raw = next(iter(dm.train_dataloader()))
    assert raw["sce"].dtype == torch.uint8 and raw["sce"].shape == (3, 4, 32, 32, 3)
    batch = dm.on_after_batch_transfer(dm.on_before_batch_transfer(raw, 0), 0)
    assert isinstance(batch, VideoBatch) and batch.validate("genprop") is batch
    assert batch.sce.shape == batch.target.shape == (3, 4, 3, 32, 32)
    assert batch.first.shape == (3, 3, 32, 32)
    assert batch.mask.shape == (3, 4, 32, 32) and batch.mask.max() == 1.0
    assert batch.target.min() >= -1.0 and batch.target.max() <= 1.0
    assert batch.task.dtype == torch.long and len(batch.prompt) == len(batch.key) == 3
    assert batch.key == raw["key"]
    torch.testing.assert_close(to_model_batch(raw).target, batch.target)


def test_lightning_moves_the_typed_batch_to_the_device(shard_dir: Path) -> None:
    """Lightning's default transfer hook moves every tensor of a VideoBatch (dtypes kept)."""
    dm = ShardDataModule(
        shards=shard_dir / "val", batch_size=2, num_workers=0, resampled=False, epoch_batches=None
    )
    batch = to_model_batch(next(iter(dm.train_dataloader())))
    meta = torch.device("meta")  # a second device on any machine
    moved = DataHooks().transfer_batch_to_device(batch, meta, 0)
    assert isinstance(moved, VideoBatch) and moved.prompt == batch.prompt
    assert {n: (t.device.type, t.dtype) for n, t in moved.tensors().items()} == {
        n: ("meta", t.dtype) for n, t in batch.tensors().items()
    }
    assert set(batch.tensors()) == {"target", "first", "task", "sce", "mask"}


def test_corrupt_sample_counted_and_skipped(tmp_path: Path, caplog) -> None:
    write_shards(tmp_path, shards=1, per_shard=5, corrupt_keys=("train000002",))
    dm = ShardDataModule(
        shards=tmp_path, batch_size=1, num_workers=0, resampled=False, epoch_batches=None
    )
    with caplog.at_level(logging.WARNING):
        keys = [k for b in dm.train_dataloader() for k in dm.on_before_batch_transfer(b, 0)["key"]]
    assert "train000002" not in keys and len(keys) == 4
    assert dm.skipped_total == 1
    assert "train000002" in caplog.text and "mask.npz" in caplog.text
    assert dm.state_dict() == {"skipped_total": 1}


def test_corrupt_sample_fatal_when_strict(tmp_path: Path) -> None:
    write_shards(tmp_path, shards=1, per_shard=3, corrupt_keys=("train000001",))
    dm = ShardDataModule(
        shards=tmp_path,
        batch_size=1,
        num_workers=0,
        resampled=False,
        epoch_batches=None,
        strict=True,
    )
    with pytest.raises(CorruptSampleError, match="train000001"):
        list(dm.train_dataloader())


def test_truncated_shard_counted(tmp_path: Path) -> None:
    (path,) = write_shards(tmp_path, shards=1, per_shard=4)
    truncate_tar(path, path.stat().st_size // 2)
    s = ShardStream(urls=[str(path)], batch_size=1, resampled=False, epoch_batches=None)
    batches = list(s)
    assert 0 < len(batches) < 4
    assert sum(int(b["skipped"]) for b in batches) + s.skipped >= 1
