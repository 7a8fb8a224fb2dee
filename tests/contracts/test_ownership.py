"""Owner markers, config identity and the per-folder run lock (:mod:`contracts.ownership`)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import contracts.ownership as ownership
from contracts.jobs import write_json_atomic
from contracts.ownership import (
    LOCK_FILE,
    MARKER,
    FolderError,
    FolderLock,
    claim_folder,
    owned_folder,
    remove_own_temporaries,
)

HOLD_LOCK = """
import sys
from contracts.ownership import FolderLock
lock = FolderLock(sys.argv[1], command="holder-of-the-lock")
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def hold_lock(folder: Path) -> subprocess.Popen:
    """A process that holds ``folder``'s lock until its stdin closes (or it is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_new_folder_is_claimed_and_the_same_config_may_come_back(tmp_path):
    out = tmp_path / "new"
    claim = claim_folder(out, tool="t", config={"seed": 0})
    assert claim.fresh and not claim.taken_over
    marker = json.loads((out / MARKER).read_text())
    assert marker["tool"] == "t" and marker["config_hash"] == claim.config_hash
    claim.record_outputs(["a", "b"])
    again = claim_folder(out, tool="t", config={"seed": 0})
    assert not again.fresh and again.known_outputs() == {"a", "b"}
    assert json.loads((out / MARKER).read_text())["outputs"] == ["a", "b"]


def test_other_config_is_refused_unless_overwrite(tmp_path):
    claim_folder(tmp_path / "o", tool="t", config={"seed": 0})
    with pytest.raises(FolderError, match=r"o holds the output of another t config"):
        claim_folder(tmp_path / "o", tool="t", config={"seed": 1})
    taken = claim_folder(tmp_path / "o", tool="t", config={"seed": 1}, overwrite=True)
    assert taken.taken_over and taken.known_outputs() == set()


def test_foreign_folder_is_refused_and_another_tools_folder_always(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "manifest.json").write_text("{}")
    with pytest.raises(FolderError, match=r"mine is not empty and was not written by t"):
        claim_folder(foreign, tool="t", config="c")
    assert sorted(p.name for p in foreign.iterdir()) == ["manifest.json"]  # nothing written
    assert claim_folder(foreign, tool="t", config="c", overwrite=True).taken_over
    with pytest.raises(FolderError, match="belongs to 't'"):
        claim_folder(foreign, tool="other", config="c", overwrite=True)


def test_second_lock_is_refused_naming_the_holder(tmp_path):
    busy = rf"in use by another run \(pid {os.getpid()} on"
    with FolderLock(tmp_path, command="first run"), pytest.raises(FolderError, match=busy):
        FolderLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()  # released and removed
    with FolderLock(tmp_path):  # free again
        pass


def test_lock_of_another_process_names_its_pid_and_goes_with_kill_9(tmp_path):
    proc = hold_lock(tmp_path)
    try:
        busy = rf"pid {proc.pid} on .*holder-of-the-lock"
        with pytest.raises(FolderError, match=busy), owned_folder(tmp_path, tool="t", config="c"):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / LOCK_FILE).exists()  # a killed holder cannot clean up ...
    with owned_folder(tmp_path, tool="t", config="c") as claim:  # ... but its lock is gone
        assert claim.marker.is_file()


def test_without_flock_a_dead_pid_on_this_host_is_stale(tmp_path, monkeypatch):
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": host}))
    with FolderLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(FolderError, match=rf"pid {os.getpid()}"):
            FolderLock(tmp_path).acquire()
    alive = os.getppid()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": alive, "host": host}))
    with pytest.raises(FolderError, match=rf"in use by another run \(pid {alive} on {host}"):
        FolderLock(tmp_path).acquire()


def test_refused_folder_gets_no_lock_file(tmp_path):
    (tmp_path / "x.txt").write_text("user's")
    with pytest.raises(FolderError), owned_folder(tmp_path, tool="t", config="c"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_only_own_temporaries_are_removed(tmp_path):
    for name in ("notes.tmp-1", "shard-000000.tar.tmp-77", "manifest.json.tmp-5", "a.tmp-x"):
        (tmp_path / name).write_text("")
    owned = {"shard-000000.tar", "manifest.json"}
    assert remove_own_temporaries(tmp_path, owned.__contains__) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tmp-x", "notes.tmp-1"]


def test_failed_atomic_write_leaves_no_temporary(tmp_path):
    (tmp_path / "taken").mkdir()  # os.replace onto a folder fails
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "taken", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_unwritable_marker_is_one_folder_error(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ownership, "write_json_atomic", full)
    with pytest.raises(FolderError, match=r"cannot write the owner marker .*No space left"):
        claim_folder(tmp_path / "o", tool="t", config="c")
