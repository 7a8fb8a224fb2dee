"""Checkpoint and requeue on SLURM's warning signals; loader workers ignore them.

SLURM warns a job before it ends it: ``SIGUSR2`` some time before the wall-time limit (submitit's
``--signal=USR2@signal_delay_s``, or ``scancel --signal=USR2``) and ``SIGTERM`` on preemption or
at the limit, followed by ``SIGKILL`` after ``KillWait``. Both go to **every** process of the
job step, the forked data-loader workers included.

One mechanism handles them, this module's :class:`RequeueOnSignal` callback:

* The handler only records the signal, and only in the process that installed it (a forked loader
  worker inherits the handler but its pid differs, so it ignores the signal; loaders can also set
  :func:`ignore_requeue_signals` as ``worker_init_fn``).
* After the current training batch every rank agrees that a signal arrived (one boolean
  all-reduce) and stops training; ``checkpoints/last.ckpt`` is written at the end of training
  (by the ``ModelCheckpoint(save_last=True)`` of the run, or by this callback when there is
  none). After ``fit`` (loader workers gone, loggers closed) rank 0 runs ``scontrol requeue``
  once and the process exits without a result, so the requeued job runs again and
  ``resume=auto`` continues from that checkpoint.
* Not under SLURM, or past ``max_requeues`` (``SLURM_RESTART_COUNT``), the checkpoint is still
  written but the run exits non-zero: a run stopped by a signal before ``max_steps`` never ends
  as a success.

submitit's own handlers (``USR2`` -> requeue without a Lightning checkpoint, ``SIGTERM`` ->
ignored) and Lightning's (``SIGTERM`` -> stop without a checkpoint; ``auto_requeue``) are replaced
while training runs: two requeue mechanisms would requeue twice or lose the work since the last
periodic checkpoint.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import re
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from training.resume import LAST_CHECKPOINT

log = logging.getLogger(__name__)
REQUEUE_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


def _kill_daemonic_children() -> None:
    """At exit, kill the daemonic children (data-loader workers) instead of terminating them.

    ``multiprocessing`` ends daemonic children at exit with SIGTERM and then waits for them, but
    loader workers ignore SIGTERM (:func:`ignore_requeue_signals`); a worker left over by an error
    would make the exit wait forever. Daemonic children end with their parent either way, so
    SIGKILL changes nothing else. Registered at import, after ``multiprocessing``'s own exit
    handler, so it runs first.
    """
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


atexit.register(_kill_daemonic_children)


def ignore_requeue_signals(worker_id: int | None = None) -> None:
    """``worker_init_fn`` for data loaders: the worker ignores ``SIGUSR2`` and ``SIGTERM``.

    The training process decides what to do with them; a worker that died or ran a requeue
    handler of its own would kill the step or requeue the job twice.
    """
    for signum in REQUEUE_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes for this job (``ARRAYID_TASK`` for array tasks)."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_id is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class RequeueOnSignal(pl.Callback):
    """Write ``last.ckpt`` and requeue the SLURM job, once, when a warning signal arrives.

    Args:
        checkpoint_dir: the run's ``checkpoints/`` folder (what ``resume=auto`` reads).
        max_requeues: requeue only while ``SLURM_RESTART_COUNT`` is below this.
    """

    def __init__(self, *, checkpoint_dir: Path, max_requeues: int = 20) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.max_requeues = max_requeues
        self.received: int | None = None  # the first signal number seen, if any
        self.handled_at_step: int | None = None
        self.requeued = False
        self._owner_pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Route ``SIGUSR2``/``SIGTERM`` of this process to :meth:`_on_signal` (main thread)."""
        self._owner_pid = os.getpid()
        for signum in REQUEUE_SIGNALS:
            previous = signal.signal(signum, self._on_signal)
            self._previous.setdefault(signum, previous)  # the first install's predecessor

    def uninstall(self) -> None:
        """Give the signals back to the handlers there before the first :meth:`install`.

        Call it after ``fit`` (Lightning's teardown puts back the handler it found, this one).
        """
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner_pid:
            return  # a forked loader worker: the training process handles it
        if self.received is None:
            self.received = signum
            log.warning("received %s: checkpoint after this batch", signal.Signals(signum).name)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Install again: Lightning registered its SIGTERM handler after the trainer started."""
        self.install()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        """After a signal, every rank stops training at the same step."""
        if self.handled_at_step is not None:
            return
        if trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            self.handled_at_step = trainer.global_step
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Make sure ``last.ckpt`` holds the stopped step.

        A ``ModelCheckpoint(save_last=True)`` writing to :attr:`checkpoint_dir` does it at the end
        of training (checkpoint callbacks run after this one); without one, this callback writes
        it, through a temporary file so a kill never leaves a torn checkpoint.
        """
        if self.handled_at_step is None or self._last_checkpoint_writer(trainer) is not None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        partial = self.checkpoint_dir / f"{LAST_CHECKPOINT}.partial"
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.checkpoint_dir / LAST_CHECKPOINT)
        trainer.strategy.barrier("requeue_on_signal")

    def _last_checkpoint_writer(self, trainer: pl.Trainer) -> ModelCheckpoint | None:
        for callback in trainer.checkpoint_callbacks:
            if (
                isinstance(callback, ModelCheckpoint)
                and callback.save_last
                and callback.dirpath is not None
                and Path(callback.dirpath).resolve() == self.checkpoint_dir.resolve()
            ):
                return callback
        return None

    def _requeue(self) -> bool:
        job_id = slurm_job_id()
        if job_id is None or not re.fullmatch(r"[0-9_]+", job_id):
            log.warning("not a SLURM job: not requeued")
            return False
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if restarts >= self.max_requeues:
            log.error("job %s already requeued %d times (max_requeues)", job_id, restarts)
            return False
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
        if result.returncode != 0:
            log.error("scontrol requeue %s failed: %s", job_id, result.stderr.strip())
            return False
        log.warning("requeued SLURM job %s (restart %d)", job_id, restarts + 1)
        return True

    def exit_if_interrupted(self, trainer: pl.Trainer) -> None:
        """After ``fit``: requeue (rank 0, once) and leave if a signal stopped training early.

        Raises:
            SystemExit: code 0 once the job is requeued (no result is written, so the requeued
                job runs the same command again; ranks other than 0 leave the requeue to it),
                else ``128 + signal``: a run stopped before ``max_steps`` is never a success.
        """
        if self.handled_at_step is None:
            if self.received is None:
                return
            max_steps = trainer.max_steps
            if max_steps < 0 or trainer.global_step >= max_steps:
                return  # the signal came after the last step: the run is complete
            name = signal.Signals(self.received).name
            log.error("%s arrived and training stopped before a signal checkpoint", name)
            raise SystemExit(128 + self.received)
        code = 128 + (self.received or signal.SIGTERM)
        log.warning(
            "signal checkpoint at step %d: %s",
            self.handled_at_step,
            self.checkpoint_dir / LAST_CHECKPOINT,
        )
        if trainer.is_global_zero:
            self.requeued = self._requeue()
            if self.requeued:
                raise SystemExit(0)
        elif slurm_job_id() is not None:
            raise SystemExit(0)  # rank 0 requeues the job, or fails it
        log.error(
            "stopped by a signal at step %d of %d; checkpoint in %s, continue with resume=auto",
            trainer.global_step,
            trainer.max_steps,
            self.checkpoint_dir,
        )
        raise SystemExit(code)
