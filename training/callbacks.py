"""Callbacks: export of the EMA model, and throughput / data-wait logging."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from genprop.modeling.latents import batch_size
from genprop.scale.sharding import is_sharded
from training.fsdp import export_pretrained

log = logging.getLogger(__name__)


def _exports(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
    """Whether this rank takes part in an export: rank 0, or every rank of a sharded model."""
    return trainer.is_global_zero or is_sharded(pl_module.net)  # type: ignore[arg-type]


def _writes(pl_module: pl.LightningModule) -> bool:
    return pl_module.trainer.is_global_zero


class ExportCallback(Callback):
    """Write ``save_pretrained`` folders (EMA weights) that ``genprop-propagate`` loads directly.

    * ``<dirpath>/last``: at the end of training (also after ``max_steps``).
    * ``<dirpath>/best``: each time a monitoring :class:`ModelCheckpoint` records a new best.

    Args:
        dirpath: export root, usually ``${paths.run_dir}/export``.
        export_best: also export on each new best checkpoint.
    """

    def __init__(self, *, dirpath: str, export_best: bool = True) -> None:
        self.dirpath = Path(dirpath)
        self.export_best = export_best
        self.best_path = ""  # best_model_path seen at the last export (checkpointed)

    def export(self, pl_module: pl.LightningModule, name: str) -> Path:
        """Save the module's model with its EMA weights swapped in (collective when sharded:
        every rank gathers its shards, rank 0 writes)."""
        out = self.dirpath / name
        export_pretrained(pl_module, out)
        if _writes(pl_module):
            log.info("exported %s model to %s", name, out)
        return out

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Export when a monitoring checkpoint callback has a new best path."""
        if not self.export_best or trainer.sanity_checking or not _exports(trainer, pl_module):
            return
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path:
                if cb.best_model_path != self.best_path:
                    self.best_path = cb.best_model_path
                    self.export(pl_module, "best")
                return

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Export the final EMA model."""
        if _exports(trainer, pl_module):
            self.export(pl_module, "last")

    def state_dict(self) -> dict[str, Any]:
        """Checkpointed: which best checkpoint was exported last."""
        return {"best_path": self.best_path}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best_path = str(state_dict.get("best_path", ""))


class TrainingSpeedMonitor(Callback):
    """Log ``perf/samples_per_sec`` and ``perf/data_wait_frac`` every ``log_every_n_steps``.

    Data wait is the wall time from the end of one training batch to the start of the next: the
    loader fetch, the host-to-device copy and the uint8 -> float conversion. Its fraction is that
    time over the whole window's wall time; near 0 means the loader keeps up with the step.
    Samples/s counts all ranks (batch size x world size).
    """

    def __init__(self) -> None:
        self._last_end: float | None = None
        self._window_start: float | None = None
        self._wait = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A new loader iteration: worker start-up is not counted as per-step data wait."""
        self._last_end = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Accumulate the data wait since the previous batch ended."""
        now = time.perf_counter()
        if self._last_end is not None:
            self._wait += now - self._last_end
        if self._window_start is None:
            self._window_start = now

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Count samples; log and reset the window on logging steps."""
        now = time.perf_counter()
        self._samples += batch_size(batch) * trainer.world_size
        self._last_end = now
        every = max(1, trainer.log_every_n_steps)
        if self._window_start is not None and trainer.global_step % every == 0:
            elapsed = max(now - self._window_start, 1e-9)
            pl_module.log_dict(
                {
                    "perf/samples_per_sec": self._samples / elapsed,
                    "perf/data_wait_frac": min(1.0, self._wait / elapsed),
                },
                on_step=True,
                on_epoch=False,
            )
            self._window_start, self._wait, self._samples = now, 0.0, 0
