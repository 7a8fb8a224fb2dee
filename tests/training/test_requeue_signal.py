"""Checkpoint + requeue on SIGUSR2/SIGTERM (training/signals.py); forked workers ignore them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from shard_factory import tiny_overrides

from contracts.interrupts import console_signals
from training.signals import RequeueOnSignal, ignore_requeue_signals
from training.train import CONF_DIR, register_resolvers, train

MAX_STEPS, SIGNAL_AT = 40, 3


class SignalSelfAt(pl.Callback):
    """Test helper: the training process sends itself ``signum`` at the start of batch ``step``."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _child_signals_itself(use_worker_init: bool) -> None:
    if use_worker_init:
        ignore_requeue_signals(0)
    os.kill(os.getpid(), signal.SIGUSR2)
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(0)


@pytest.mark.parametrize("use_worker_init", [False, True])
def test_forked_loader_workers_ignore_the_signals(use_worker_init: bool, tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGUSR2)
    requeue = RequeueOnSignal(checkpoint_dir=tmp_path)
    requeue.install()
    try:
        child = multiprocessing.get_context("fork").Process(
            target=_child_signals_itself, args=(use_worker_init,)
        )
        child.start()
        child.join(timeout=30)
    finally:
        requeue.uninstall()
    assert child.exitcode == 0  # neither killed by the signals nor running a requeue
    assert requeue.received is None  # the parent saw nothing
    assert signal.getsignal(signal.SIGUSR2) is before  # handlers given back


def _run(shard_dir: Path, run_dir: Path, signum: int, *extra: str) -> SystemExit:
    register_resolvers()
    overrides = [
        *tiny_overrides(shard_dir, run_dir),
        *extra,
        f"trainer.max_steps={MAX_STEPS}",
        "+callbacks.signal_self._target_=test_requeue_signal.SignalSelfAt",
        f"+callbacks.signal_self.step={SIGNAL_AT}",
        f"+callbacks.signal_self.signum={int(signum)}",
        "logger=csv",
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with pytest.raises(SystemExit) as exc:
        train(cfg)
    return exc.value


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


# With the run's ModelCheckpoint(save_last=True), and without one (the callback writes last.ckpt).
@pytest.mark.parametrize("checkpoint_callback", ["default", "none"])
def test_signal_outside_slurm_checkpoints_and_fails(
    checkpoint_callback: str, shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    extra = ["callbacks.periodic_checkpoint=null"] if checkpoint_callback == "none" else []
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or e.g. ray.init's if Ray ran earlier
    err = _run(shard_dir, tmp_path, signal.SIGTERM, *extra)
    assert err.code == 128 + signal.SIGTERM  # stopped early: never a silent success
    assert _step(tmp_path / "checkpoints" / "last.ckpt") == SIGNAL_AT + 1
    assert signal.getsignal(signal.SIGTERM) is before  # handlers given back


def test_signal_under_slurm_requeues_exactly_once(
    shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in scontrol on PATH records its arguments.
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    run_dir = tmp_path / "run"
    err = _run(shard_dir, run_dir, signal.SIGUSR2)
    assert err.code == 0  # requeued: the process leaves without a result
    assert calls.read_text().splitlines() == ["requeue 70_1"]
    assert _step(run_dir / "checkpoints" / "last.ckpt") == SIGNAL_AT + 1


def test_ctrl_c_ends_the_run_with_one_line_and_130(
    shard_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lightning turns Ctrl-C into ``sys.exit(1)``; the command exits 130 as every other does."""
    register_resolvers()
    overrides = [
        *tiny_overrides(shard_dir, tmp_path),
        f"trainer.max_steps={MAX_STEPS}",
        "+callbacks.signal_self._target_=test_requeue_signal.SignalSelfAt",
        f"+callbacks.signal_self.step={SIGNAL_AT}",
        f"+callbacks.signal_self.signum={int(signal.SIGINT)}",
        "logger=csv",
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with pytest.raises(SystemExit) as exc:
        console_signals("genprop-train")(train)(cfg)
    assert exc.value.code == 130
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "genprop-train: stopped by SIGINT (finished work is kept; the same command resumes it)"
        )
    )
