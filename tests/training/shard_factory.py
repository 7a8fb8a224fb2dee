"""Tiny synthetic shards in the real schema (``contracts.schema.encode_sample``) for tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import webdataset as wds

from contracts.schema import SCHEMA_VERSION, Sample, encode_sample
from contracts.tasks import TASKS


def make_sample(key: str, task: str, *, frames: int = 4, size: int = 32, seed: int = 0) -> Sample:
    """A random but schema-valid pair: moving square edited in a moving mask."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
    mask = np.zeros((frames, size, size), np.uint8)
    for t in range(frames):
        mask[t, 8 + t : 16 + t, 8:16] = 1
    sce = base.copy()
    sce[mask.astype(bool)] = 0
    meta = {
        "task": task,
        "recipe": "synthetic",
        "prompt": f"{task} test",
        "source": "test",
        "video_id": key,
        "object_ids": [1],
        "frame_indices": list(range(frames)),
        "fps": 8.0,
        "seed": seed,
        "schema_version": SCHEMA_VERSION,
        "params": {},
    }
    return Sample(key, sce, base[0].copy(), base, mask, meta)


def write_shards(
    folder: Path,
    *,
    shards: int,
    per_shard: int,
    prefix: str = "train",
    frames: int = 4,
    size: int = 32,
    corrupt_keys: tuple[str, ...] = (),
) -> list[Path]:
    """Write ``shards`` tar files of ``per_shard`` lossless samples; tasks cycle through TASKS.

    Keys listed in ``corrupt_keys`` get a truncated ``mask.npz`` (an undecodable sample).
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    n = 0
    for s in range(shards):
        path = folder / f"{prefix}-{s:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for _ in range(per_shard):
                key = f"{prefix}{n:06d}"
                d = encode_sample(
                    make_sample(key, TASKS[n % len(TASKS)], frames=frames, size=size, seed=n),
                    codec="lossless",
                )
                if key in corrupt_keys:
                    d["mask.npz"] = d["mask.npz"][:20]
                sink.write(d)
                n += 1
        paths.append(path)
    return paths


def truncate_tar(path: Path, keep_bytes: int) -> None:
    """Cut a shard short (a partially written or damaged tar)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])


def tar_member_names(path: Path) -> list[str]:
    """Names inside a shard (for sanity checks)."""
    with tarfile.open(fileobj=io.BytesIO(path.read_bytes())) as tf:
        return tf.getnames()


def tiny_overrides(shard_dir: Path, run_dir: Path) -> list[str]:
    """Overrides that make any experiment run in seconds on one CPU core."""
    return [
        f"data.shards={shard_dir / 'train'}",
        f"data.val_shards={shard_dir / 'val'}",
        f"paths.root_dir={run_dir}",
        f"paths.run_dir={run_dir}",
        "model.net.preset_name=cpu_test",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.shuffle_buffer=4",
        "trainer=cpu",
        "trainer.limit_val_batches=1",
        "model.preview_steps=2",
        "callbacks.progress=null",
    ]
