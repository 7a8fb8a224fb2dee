"""The training/validation sample stream over WebDataset shards, as a torch ``IterableDataset``.

Pipeline per (rank, worker): shard choice -> ``webdataset.tarfile_to_samples`` -> decode with
``contracts.schema.decode_sample`` (corrupt samples counted and skipped) -> per-task weighting ->
shuffle buffer -> batches of uint8 tensors (see :mod:`training.batch`) -> stop after
``epoch_batches`` batches (WebDataset's ``with_epoch``).

Shard choice: with ``resampled=True`` each (rank, worker) draws shards with replacement forever
(WebDataset's ``ResampledShards`` idea), from its own RNG; otherwise the shard list is split by
node (rank) and then by worker, each shard read once per epoch (no duplicates across workers).

Seeding: all randomness (shard draws, task weighting, shuffle buffer) comes from one
``random.Random`` seeded with ``(seed, start_step, rank, worker)``, where ``start_step`` is the
trainer's ``global_step`` when the loader is iterated (set by
:class:`training.datamodule.StepSeededLoader`). Two iterations that start at the same step see the
same batches, which is what makes ``resume=auto`` deterministic (see :mod:`training.resume`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from contracts.schema import Sample, decode_sample
from contracts.tasks import TASKS
from training.batch import collate_samples
from training.resume import step_seed

log = logging.getLogger(__name__)


class CorruptSampleError(RuntimeError):
    """A shard or sample could not be read and ``strict=True``."""


class DataPipelineError(RuntimeError):
    """The stream cannot make progress: too many consecutive unreadable shards or samples."""


class ShardStream(IterableDataset):
    """Batches of decoded training pairs from a list of shard URLs.

    Args:
        urls: expanded shard URLs or local paths (see :func:`contracts.shard_spec.expand_shards`).
        batch_size: samples per batch (per rank).
        resampled: draw shards with replacement forever (training) instead of one pass.
        epoch_batches: batches per iteration ("epoch"); ``None`` = until the shards run out
            (only valid with ``resampled=False``).
        task_weights: relative weight per task; a sample of task ``t`` is kept with probability
            ``w[t] / max(w)`` (0 drops the task). ``None`` keeps every sample.
        shuffle_buffer: samples held for shuffling (0 = no shuffling).
        seed: base seed of the stream.
        strict: raise :class:`CorruptSampleError` on a corrupt shard or sample instead of
            counting, logging and skipping it.
        num_frames: keep only the first ``num_frames`` frames of each clip (``None``: all).
        drop_last: drop a final incomplete batch.
        max_consecutive_failures: stop with :class:`DataPipelineError` after this many unreadable
            shards or corrupt samples in a row (no good sample in between), e.g. when no shard
            is readable at all.
        rank: this process's global rank; world_size: number of ranks (for split by node).
    """

    def __init__(
        self,
        *,
        urls: list[str],
        batch_size: int,
        resampled: bool,
        epoch_batches: int | None,
        task_weights: dict[str, float] | None = None,
        shuffle_buffer: int = 0,
        seed: int = 0,
        strict: bool = False,
        num_frames: int | None = None,
        drop_last: bool = True,
        max_consecutive_failures: int = 256,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if not urls:
            raise ValueError("ShardStream: empty shard list")
        # A batch size below 1 would never complete a batch: the stream would read forever.
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError(f"data.batch_size: expected an integer >= 1, got {batch_size!r}")
        if epoch_batches is not None and (type(epoch_batches) is not int or epoch_batches < 1):
            raise ValueError(
                f"data.epoch_batches: expected an integer >= 1 or null, got {epoch_batches!r}"
            )
        if max_consecutive_failures < 1:
            raise ValueError(
                f"data.max_consecutive_failures: expected >= 1, got {max_consecutive_failures}"
            )
        if resampled and epoch_batches is None:
            raise ValueError(
                "ShardStream: resampled=True needs epoch_batches (the stream is endless)"
            )
        self.urls = list(urls)
        self.batch_size = batch_size
        self.resampled = resampled
        self.epoch_batches = epoch_batches
        self.keep_prob = _keep_probabilities(task_weights)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.strict = strict
        self.num_frames = num_frames
        self.drop_last = drop_last
        self.max_consecutive_failures = max_consecutive_failures
        self.consecutive_failures = 0  # failures since the last good sample
        self.rank = rank
        self.world_size = world_size
        self.start_step = 0
        self.skipped = 0  # corrupt samples skipped in this process since the last batch

    # -- stages ------------------------------------------------------------------------------
    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def _shards(self, rng: random.Random) -> Iterator[dict[str, str]]:
        if self.resampled:
            while True:
                yield {"url": rng.choice(self.urls)}
        worker, num_workers = self._worker()
        mine = self.urls[self.rank :: self.world_size][worker::num_workers]
        if not mine:
            log.warning(
                "rank %d worker %d gets no shard (%d shards for %d ranks x %d workers)",
                self.rank,
                worker,
                len(self.urls),
                self.world_size,
                num_workers,
            )
        for url in mine:
            yield {"url": url}

    def _failure(self, what: str, exn: Exception) -> None:
        """Count one skipped shard/sample; stop once too many fail in a row."""
        self.skipped += 1
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.max_consecutive_failures:
            raise DataPipelineError(
                f"data.shards: {self.consecutive_failures} unreadable shards or corrupt samples "
                f"in a row, none readable in between (limit data.max_consecutive_failures="
                f"{self.max_consecutive_failures}); last: {what}: {exn}. Check the "
                f"{len(self.urls)} shard(s), e.g. {self.urls[0]}"
            )
        log.warning("skipping %s: %s", what, exn)

    def _on_read_error(self, exn: Exception) -> bool:
        """WebDataset handler for unreadable shards/tar members: count and continue (or raise)."""
        if self.strict:
            raise CorruptSampleError(f"unreadable shard data: {exn}") from exn
        self._failure("unreadable shard data", exn)
        return True

    def _decode(self, members: dict[str, Any]) -> Sample:
        """One sample from its tar members (subclasses read other sample formats)."""
        return decode_sample(members)

    def _decoded(self, raw: Iterator[dict[str, Any]]) -> Iterator[Sample]:
        """Decoded samples; a corrupt one is counted and skipped (raised when ``strict``)."""
        for d in raw:
            try:
                sample = self._decode(d)
            except Exception as exn:
                where = f"{d.get('__url__', '?')} sample {d.get('__key__', '?')!r}"
                if self.strict:
                    raise CorruptSampleError(f"{where}: {exn}") from exn
                self._failure(f"corrupt sample {where}", exn)
                continue
            self.consecutive_failures = 0
            yield sample

    def _weighted(self, samples: Iterator[Sample], rng: random.Random) -> Iterator[Sample]:
        for s in samples:
            p = 1.0 if self.keep_prob is None else self.keep_prob[s.meta["task"]]
            if p >= 1.0 or rng.random() < p:
                yield s

    def _shuffled(self, samples: Iterator[Sample], rng: random.Random) -> Iterator[Sample]:
        if self.shuffle_buffer <= 1:
            yield from samples
            return
        buf: list[Sample] = []
        for s in samples:
            buf.append(s)
            if len(buf) >= self.shuffle_buffer:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, _ = self._worker()
        rng = random.Random(step_seed(self.seed, self.start_step, self.rank * 4096 + worker))
        raw = wds.tarfile_to_samples(handler=self._on_read_error)(self._shards(rng))
        samples = self._shuffled(self._weighted(self._decoded(raw), rng), rng)
        produced, self.consecutive_failures = 0, 0
        batch: list[Sample] = []
        for s in samples:
            batch.append(s)
            if len(batch) == self.batch_size:
                yield self._collate(batch)
                batch, produced = [], produced + 1
                if self.epoch_batches is not None and produced >= self.epoch_batches:
                    return
        if batch and not self.drop_last:
            yield self._collate(batch)

    def _collate(self, batch: list[Sample]) -> dict[str, Any]:
        out = collate_samples(batch, num_frames=self.num_frames)
        out["skipped"] = torch.tensor(self.skipped, dtype=torch.long)
        self.skipped = 0
        return out


def _keep_probabilities(weights: dict[str, float] | None) -> dict[str, float] | None:
    if weights is None:
        return None
    unknown = sorted(set(weights) - set(TASKS))
    if unknown:
        raise ValueError(f"data.task_weights: unknown tasks {unknown}, expected names in {TASKS}")
    w = {t: float(weights.get(t, 1.0)) for t in TASKS}
    if any(v < 0 for v in w.values()) or max(w.values()) <= 0:
        raise ValueError(f"data.task_weights: weights must be >= 0 with one > 0, got {w}")
    top = max(w.values())
    return {t: v / top for t, v in w.items()}
