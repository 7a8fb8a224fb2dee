"""Loader workers die with the process that started them, even when it is SIGKILLed while a
worker is stuck inside one batch (torch's own parent check runs only between batches)."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from torch.utils.data import IterableDataset

from training.datamodule import ShardDataModule


class _Stuck(IterableDataset):
    """A stream whose first batch never completes; it writes the worker's pid to ``fd`` first."""

    start_step = 0

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __iter__(self) -> Iterator[int]:
        os.write(self.fd, f"{os.getpid()}\n".encode())
        while True:
            time.sleep(1)
        yield 0  # never reached


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _trainer_stand_in(shards: Path, fd: int) -> None:
    """Iterate the training loader of a :class:`ShardDataModule` (one worker) over a stuck
    stream; never returns (the test kills this process)."""
    dm = ShardDataModule(shards=shards, num_workers=1, pin_memory=False)
    iterator = iter(dm._loader(_Stuck(fd)))
    try:
        next(iterator)
    finally:
        time.sleep(600)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_worker_dies_when_the_trainer_is_killed(shard_dir: Path) -> None:
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns on fork() with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        trainer = os.fork()  # a stand-in trainer process that this test can SIGKILL
    if trainer == 0:
        try:
            os.close(read)
            _trainer_stand_in(shard_dir / "train", write)
        finally:
            os._exit(1)
    os.close(write)
    worker = None
    try:
        ready, _, _ = select.select([read], [], [], 60)
        assert ready, "the loader worker did not start"
        worker = int(os.read(read, 64).split()[0])
        assert worker != trainer and _alive(worker)
        os.kill(trainer, signal.SIGKILL)
        os.waitpid(trainer, 0)
        trainer = None
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), f"loader worker {worker} outlived its killed parent"
    finally:
        os.close(read)
        if trainer is not None:
            os.kill(trainer, signal.SIGKILL)
            os.waitpid(trainer, 0)
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)  # the orphan this test made, should the check fail
