"""A ``genprop-train`` run folder belongs to one config and to one run at a time.

The run folder's name leaves ``data.shards`` out, so two runs that differ only in their data
would share it: the second is refused, before anything is built, with a message naming what
differs and how to pick another run name; a run with the same identity (``resume=auto``, a
raised ``trainer.max_steps``) goes on; a folder in use by another run is refused naming its pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from shard_factory import tiny_overrides

from contracts.ownership import MARKER
from training.run_folder import RunFolderError, claim_run_folder, is_global_rank_zero
from training.train import train

HOLD = """
import sys
from contracts.ownership import FolderLock
FolderLock(sys.argv[1], command="genprop-train name=default").acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def overrides(shard_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["experiment=tiny_cpu", *tiny_overrides(shard_dir, run_dir), *extra]


def test_run_of_other_data_is_refused_before_anything_is_built(
    shard_dir, tmp_path, compose_cfg, monkeypatch
):
    run_dir = tmp_path / "run"
    with claim_run_folder(compose_cfg(overrides(shard_dir, run_dir)), run_dir):
        pass
    marker = json.loads((run_dir / MARKER).read_text())
    assert marker["tool"] == "genprop-train"
    assert marker["identity"]["data.shards"] == str(shard_dir / "train")

    def must_not_build(*args, **kwargs):
        raise AssertionError("the model or data was built for a refused run")

    monkeypatch.setattr("training.train._fit", must_not_build)
    other = compose_cfg(overrides(shard_dir, run_dir, f"data.shards={shard_dir / 'val'}"))
    with pytest.raises(RunFolderError, match=r"holds a run of another config \(differs in: "
                                             r"data\.shards;.*name=NEW_NAME"):  # fmt: skip
        train(other)
    assert json.loads((run_dir / MARKER).read_text())["identity"] == marker["identity"]


def test_same_identity_may_resume_with_other_trainer_options(shard_dir, tmp_path, compose_cfg):
    run_dir = tmp_path / "run"
    with claim_run_folder(compose_cfg(overrides(shard_dir, run_dir)), run_dir):
        pass
    longer = compose_cfg(overrides(shard_dir, run_dir, "trainer.max_steps=99", "resume=auto"))
    with claim_run_folder(longer, run_dir):
        assert (run_dir / MARKER).is_file()


def test_run_folder_in_use_is_refused_naming_the_pid(shard_dir, tmp_path, compose_cfg):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        cfg = compose_cfg(overrides(shard_dir, run_dir))
        with pytest.raises(RunFolderError, match=rf"in use by another run \(pid {holder.pid} on"):
            train(cfg)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_only_global_rank_zero_claims(shard_dir, tmp_path, compose_cfg, monkeypatch):
    assert is_global_rank_zero({}) and is_global_rank_zero({"RANK": "0", "LOCAL_RANK": "0"})
    assert not is_global_rank_zero({"SLURM_PROCID": "3"})
    assert not is_global_rank_zero({"LOCAL_RANK": "0", "NODE_RANK": "1"})
    monkeypatch.setitem(os.environ, "LOCAL_RANK", "1")
    run_dir = tmp_path / "run"
    with claim_run_folder(compose_cfg(overrides(shard_dir, run_dir)), run_dir):
        assert not (run_dir / MARKER).exists()


def test_refused_run_folder_and_missing_resume_are_one_line_exit_2(
    shard_dir, tmp_path, compose_cfg, capsys
):
    from training.train import _hydra_entry

    run_dir = tmp_path / "run"
    with claim_run_folder(compose_cfg(overrides(shard_dir, run_dir)), run_dir):
        pass
    cases = {
        "another config": (f"data.shards={shard_dir / 'val'}",),
        "no checkpoint file": (f"resume={tmp_path / 'nope.ckpt'}",),
    }
    for needle, extra in cases.items():
        with pytest.raises(SystemExit) as e:
            _hydra_entry(compose_cfg(overrides(shard_dir, run_dir, *extra)))
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("genprop-train: error: ") and "\n" not in err, err
        assert needle in err, err
