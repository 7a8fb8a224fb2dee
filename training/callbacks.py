"""Callbacks: periodic checkpoints kept K at a time, export of the EMA model, and throughput /
data-wait logging."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.distributed.fsdp import FSDPModule

from genprop.modeling.latents import batch_size
from genprop.scale.sharding import is_sharded
from training.fsdp import export_pretrained
from training.nonfinite import check_exportable

log = logging.getLogger(__name__)


def check_keep_last(keep_last: Any) -> int | None:
    """``keep_last`` if it is a positive integer or ``None``.

    Raises:
        ValueError: Otherwise, in one line saying what is expected.
    """
    if keep_last is None or (type(keep_last) is int and keep_last >= 1):
        return keep_last
    raise ValueError(
        "callbacks.periodic_checkpoint.keep_last: expected a positive integer (periodic "
        f"checkpoints kept) or null (keep all), got {keep_last!r}"
    )


class PeriodicCheckpoint(ModelCheckpoint):
    """Checkpoint every ``every_n_train_steps`` and keep only the newest ``keep_last`` of them.

    Lightning's own retention: top-k over the global step (``monitor="step"``, ``mode="max"``,
    ``save_top_k=keep_last``), so the oldest checkpoint is removed by Lightning through
    ``trainer.strategy.remove_checkpoint``, which deletes a ``.ckpt`` file and a sharded
    checkpoint folder (``trainer=fsdp``) alike. ``last.ckpt`` (``save_last``) and the
    best-by-validation checkpoint of another callback are not counted. A new checkpoint is
    written before the oldest is removed, so a save briefly holds ``keep_last + 1``.

    Args:
        keep_last: periodic checkpoints kept (a positive integer), ``None`` keeps all of them.
        **kwargs: :class:`ModelCheckpoint` arguments (``dirpath``, ``filename``,
            ``every_n_train_steps``, ``save_last``, ...), except the ones set here.

    Raises:
        ValueError: If ``keep_last`` is not a positive integer or ``None``.
    """

    def __init__(self, *, keep_last: int | None = 2, **kwargs: Any) -> None:
        keep_last = check_keep_last(keep_last)
        taken = sorted({"monitor", "mode", "save_top_k", "save_on_train_epoch_end"} & set(kwargs))
        if taken:
            raise ValueError(f"PeriodicCheckpoint: {taken} are set from keep_last; remove them")
        super().__init__(
            monitor=None if keep_last is None else "step",
            mode="max",
            save_top_k=-1 if keep_last is None else keep_last,
            # A monitored ModelCheckpoint defers a save that falls on a data epoch's last batch to
            # the next validation end; saving on the step itself keeps the resume granularity.
            save_on_train_epoch_end=True,
            **kwargs,
        )
        self.keep_last = keep_last


def _exports(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
    """Whether this rank takes part in an export: rank 0, or every rank of a sharded model."""
    return trainer.is_global_zero or is_sharded(pl_module.net)  # type: ignore[arg-type]


def _writes(pl_module: pl.LightningModule) -> bool:
    return pl_module.trainer.is_global_zero


class ExportCallback(Callback):
    """Write ``save_pretrained`` folders (EMA weights) that ``genprop-propagate`` loads directly.

    * ``<dirpath>/last``: at the end of training (also after ``max_steps``).
    * ``<dirpath>/best``: each time the best-by-validation :class:`ModelCheckpoint` records a new
      best, when ``export_best`` says so: the weights of its ``best.ckpt``.

    Any saved checkpoint can also be exported afterwards: ``python -m training.export``.

    Args:
        dirpath: export root, usually ``${paths.run_dir}/export``.
        export_best: also export on each new best: ``True``, ``False``, or ``"auto"``: only when
            the model is not sharded (a sharded model's export gathers the whole model on rank 0
            and writes it: 71 GB for Wan2.1-I2V-14B, too slow to repeat at every new best).

    Raises:
        ValueError: If ``export_best`` is none of the above.
    """

    def __init__(self, *, dirpath: str, export_best: bool | str = "auto") -> None:
        if not (isinstance(export_best, bool) or export_best == "auto"):
            raise ValueError(
                f"callbacks.export.export_best: expected true, false or auto, got {export_best!r}"
            )
        self.dirpath = Path(dirpath)
        self.export_best = export_best
        self.best_score: float | None = None  # of the best exported last (checkpointed)
        self._validated = False  # a validation ran since the last check (no sync every step)

    def exports_best(self, pl_module: pl.LightningModule) -> bool:
        """Whether a new best is exported (``"auto"``: only an unsharded model)."""
        if self.export_best == "auto":
            return not is_sharded(pl_module.net)  # type: ignore[arg-type]
        return bool(self.export_best)

    def export(self, pl_module: pl.LightningModule, name: str) -> Path:
        """Save the module's model with its EMA weights swapped in (collective when sharded:
        every rank gathers its shards, rank 0 writes).

        Raises:
            NonFiniteError: if a weight to export holds NaN or inf (nothing is written).
        """
        out = self.dirpath / name
        net = pl_module.net  # type: ignore[attr-defined]
        shadow = pl_module.ema.shadow  # type: ignore[attr-defined]
        check_exportable(net, shadow, str(out), collective=is_sharded(net))
        if is_sharded(net):
            # FSDP2 never reshards the root after a forward, so after validation (no backward)
            # the root holds whole tensors where the EMA swap expects this rank's shards.
            for module in net.modules():
                if isinstance(module, FSDPModule):
                    module.reshard()
        export_pretrained(pl_module, out)
        if _writes(pl_module):
            log.info("exported %s model to %s", name, out)
        return out

    def _export_new_best(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Export ``best`` if the best-by-validation checkpoint has a new best score.

        Checked at the first hook after a validation (the next batch's start, the end of
        training), not at this callback's ``on_validation_end``: Lightning runs checkpoint
        callbacks after all others, so the new score is not recorded yet there. The weights and
        EMA are still the validated ones.
        """
        if not self._validated or not self.exports_best(pl_module):
            return
        self._validated = False
        best = _best_checkpoint(trainer)
        if best is None or best.best_model_score is None or not _exports(trainer, pl_module):
            return
        score = float(best.best_model_score)
        if score != self.best_score:
            self.best_score = score
            self.export(pl_module, "best")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Note a validation (its best is looked at in the next hook, see above)."""
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Export a best recorded by the validation that ran after the previous step."""
        self._export_new_best(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Export a best recorded by the last validation, then the final EMA model."""
        self._export_new_best(trainer, pl_module)
        if _exports(trainer, pl_module):
            self.export(pl_module, "last")

    def state_dict(self) -> dict[str, Any]:
        """Checkpointed: the best score exported last."""
        return {"best_score": self.best_score}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best_score = state_dict.get("best_score")


def _best_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The first checkpoint callback that monitors a metric (the best-by-validation one)."""
    for cb in trainer.checkpoint_callbacks:
        # PeriodicCheckpoint monitors the step: its "best" is merely the newest checkpoint.
        periodic = isinstance(cb, PeriodicCheckpoint)
        if not periodic and isinstance(cb, ModelCheckpoint) and cb.monitor:
            return cb
    return None


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
