"""``ShardDataModule``: WebDataset shards -> batches for ``GenPropLitModule``."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from contracts.shard_spec import expand_shards
from genprop.video_batch import VideoBatch
from training.batch import to_model_batch
from training.sequence_parallel import data_parallel_rank
from training.shard_stream import DataPipelineError, ShardStream
from training.signals import ignore_requeue_signals

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Make this process die (``SIGKILL``) when its parent dies, however the parent dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``, through the C library). torch's own check that the
    parent lives runs only between batches, so a worker stuck in one batch would outlive a
    killed trainer as an orphan. Exits at once when the parent is already gone (it died before
    the call). The signal comes when the *thread* that started this process ends: loaders are
    iterated from the trainer's main thread.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            log.warning("loader worker: prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(err))
    if os.getppid() != parent_pid:
        os._exit(1)


class LoaderWorkerInit:
    """``worker_init_fn`` of the training loaders (picklable, for spawned workers too): the
    worker dies with the process that started it (:func:`die_with_parent`) and leaves
    ``SIGUSR2``/``SIGTERM`` to it (:func:`training.signals.ignore_requeue_signals`)."""

    def __init__(self) -> None:
        self.parent_pid = os.getpid()

    def __call__(self, worker_id: int) -> None:
        die_with_parent(self.parent_pid)
        # SLURM signals every process of a step: workers leave requeue to the main process.
        ignore_requeue_signals(worker_id)


class StepSeededLoader(DataLoader):
    """A DataLoader that tells its :class:`ShardStream` the trainer step before each iteration.

    Workers are not persistent, so every ``iter()`` ships the dataset (with the new
    ``start_step``) to fresh workers; the stream is then seeded from ``(seed, start_step, ...)``.
    A :class:`DataPipelineError` raised in a worker is re-raised with its own one-line message;
    with ``require_batches`` an iteration that yields no batch at all is one too (a training
    stream whose shards are all unreadable would otherwise start empty epochs forever).
    """

    def __init__(
        self,
        dataset: ShardStream,
        *,
        step_fn: Callable[[], int],
        require_batches: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, batch_size=None, persistent_workers=False, **kwargs)
        self._step_fn = step_fn
        self._require_batches = require_batches

    def __iter__(self) -> Iterator[Any]:
        self.dataset.start_step = int(self._step_fn())  # type: ignore[attr-defined]
        return self._batches(super().__iter__())

    def _batches(self, inner: Iterator[Any]) -> Iterator[Any]:
        produced = 0
        try:
            for batch in inner:
                produced += 1
                yield batch
        except DataPipelineError as e:
            raise DataPipelineError(_worker_message(e)) from None
        if self._require_batches and not produced:
            urls = self.dataset.urls  # type: ignore[attr-defined]
            raise DataPipelineError(
                f"data.shards: a pass over the {len(urls)} training shard(s) gave no batch (all "
                f"unreadable, or fewer samples than data.batch_size); e.g. {urls[0]}"
            )


def _worker_message(err: DataPipelineError) -> str:
    """The original message of an error re-raised from a loader worker (torch wraps it in the
    worker's traceback: ``Caught ... Original Traceback ... DataPipelineError: <message>``)."""
    text = str(err).strip()
    marker = f"{DataPipelineError.__name__}: "
    if "Original Traceback" in text and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text


class ShardDataModule(pl.LightningDataModule):
    """Training and validation batches from WebDataset shards written by ``genprop-data``.

    Args:
        shards: training shards (see :func:`expand_shards`).
        val_shards: separate validation shards, read once per validation in order; ``None``
            disables validation.
        batch_size: samples per batch per rank.
        num_workers: loader processes per rank.
        resampled: training shards drawn with replacement (endless stream cut into epochs of
            ``epoch_batches`` batches); ``False`` reads each shard once per epoch.
        epoch_batches: batches per epoch per rank (WebDataset ``with_epoch``).
        task_weights: relative per-task weights (see :class:`ShardStream`).
        shuffle_buffer: training shuffle buffer, in samples.
        seed: stream seed.
        strict: corrupt samples are fatal instead of counted and skipped.
        max_consecutive_failures: stop after this many unreadable shards / corrupt samples in a
            row (see :class:`ShardStream`).
        num_frames: crop clips to their first ``num_frames`` frames.
        pin_memory: pin loader batches (faster host-to-GPU copies).
        prefetch_factor: batches each worker prepares ahead.
    """

    def __init__(
        self,
        *,
        shards: str | Path | Sequence[str],
        val_shards: str | Path | Sequence[str] | None = None,
        batch_size: int = 4,
        num_workers: int = 2,
        resampled: bool = True,
        epoch_batches: int | None = 1000,
        task_weights: dict[str, float] | None = None,
        shuffle_buffer: int = 64,
        seed: int = 0,
        strict: bool = False,
        max_consecutive_failures: int = 256,
        num_frames: int | None = None,
        pin_memory: bool = True,
        prefetch_factor: int = 4,
    ) -> None:
        super().__init__()
        self.train_urls = expand_shards(shards, field="data.shards")
        self.val_urls = (
            None if val_shards is None else expand_shards(val_shards, field="data.val_shards")
        )
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.resampled = resampled
        self.epoch_batches = epoch_batches
        self.task_weights = None if task_weights is None else dict(task_weights)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.strict = strict
        self.max_consecutive_failures = max_consecutive_failures
        self.num_frames = num_frames
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.skipped_total = 0  # corrupt samples skipped so far (all workers of this rank)

    def _rank(self) -> tuple[int, int]:
        # By data-parallel replica: the ranks of a sequence-parallel group read the same batches.
        trainer = self.trainer
        return (0, 1) if trainer is None else data_parallel_rank(trainer)

    def _step(self) -> int:
        return 0 if self.trainer is None else self.trainer.global_step

    def _loader(self, stream: ShardStream, *, require_batches: bool = False) -> StepSeededLoader:
        extra: dict[str, Any] = {}
        if self.num_workers > 0:
            extra["prefetch_factor"] = self.prefetch_factor
        pin = (
            self.pin_memory
            and self.trainer is not None
            and self.trainer.strategy.root_device.type == "cuda"
        )
        return StepSeededLoader(
            stream,
            step_fn=self._step,
            require_batches=require_batches,
            num_workers=self.num_workers,
            pin_memory=pin,
            worker_init_fn=LoaderWorkerInit(),
            **extra,
        )

    def train_dataloader(self) -> StepSeededLoader:
        """The endless (resampled) or one-pass training stream of this rank."""
        rank, world = self._rank()
        stream = self._stream(
            urls=self.train_urls,
            batch_size=self.batch_size,
            resampled=self.resampled,
            epoch_batches=self.epoch_batches,
            task_weights=self.task_weights,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            strict=self.strict,
            max_consecutive_failures=self.max_consecutive_failures,
            rank=rank,
            world_size=world,
        )
        return self._loader(stream, require_batches=True)

    def val_dataloader(self) -> StepSeededLoader | list[Any]:
        """Validation shards in order, the same on every rank (no task weighting, no shuffle)."""
        if self.val_urls is None:
            return []
        stream = self._stream(
            urls=self.val_urls,
            batch_size=self.batch_size,
            resampled=False,
            epoch_batches=None,
            seed=self.seed,
            strict=self.strict,
            max_consecutive_failures=self.max_consecutive_failures,
            drop_last=False,
        )
        return self._loader(stream)

    def _stream(self, **options: Any) -> ShardStream:
        """The sample stream over some of the shards (subclasses read other sample kinds)."""
        return ShardStream(num_frames=self.num_frames, **options)

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> Any:
        """Account the corrupt samples the workers skipped before this batch."""
        skipped = int(batch.pop("skipped", 0))
        if skipped:
            self.skipped_total += skipped
            log.warning(
                "data: %d corrupt sample(s) skipped (%d so far)", skipped, self.skipped_total
            )
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> VideoBatch:
        """uint8 -> float conversion on the device, into the model's
        :class:`~genprop.video_batch.VideoBatch` (see :mod:`training.batch`)."""
        return to_model_batch(batch)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointed counters (the stream itself is re-seeded from the step on resume)."""
        return {"skipped_total": self.skipped_total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.skipped_total = int(state_dict.get("skipped_total", 0))
