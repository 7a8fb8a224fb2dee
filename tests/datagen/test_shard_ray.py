"""Shard jobs on a real local Ray: a killed worker is retried, a local run stays local, and
shard workers die with their driver.

Faults are injected from the test through ``ray.runtime_env``: a ``worker_process_setup_hook``
(defined below, imported by each Ray worker) wraps the worker's shard function.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synth_records import tiny_dataset
from test_runner import job_cfg, read_all

from datagen.runner import run_job

pytestmark = pytest.mark.ray
TESTS = str(Path(__file__).parent)
MARKER_ENV = "GENPROP_TEST_MARKER"


def kill_once_hook() -> None:
    """Worker setup hook: the first shard task of the job SIGKILLs its own worker process."""
    import datagen.runner

    real, marker = datagen.runner.build_shard, os.environ[MARKER_ENV]

    def build(plan, spec, ids):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return real(plan, spec, ids)
        os.kill(os.getpid(), signal.SIGKILL)

    datagen.runner.build_shard = build


def hang_hook() -> None:
    """Worker setup hook: a shard task writes its worker's pid to the marker file and hangs."""
    import datagen.runner

    def build(plan, spec, ids):
        Path(os.environ[MARKER_ENV]).write_text(str(os.getpid()))
        time.sleep(600)

    datagen.runner.build_shard = build


def ray_cfg(data: Path, out: Path, hook: str, marker: Path, *overrides: str):
    cfg = job_cfg(data, out, "ray.enabled=true", *overrides)
    path = os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])
    cfg.ray.runtime_env = {
        "worker_process_setup_hook": f"test_shard_ray.{hook}",
        "env_vars": {MARKER_ENV: str(marker), "PYTHONPATH": path},
    }
    return cfg


def test_local_ray_matches_in_process_and_retries_a_killed_worker(tmp_path, monkeypatch):
    tiny_dataset(tmp_path / "data", videos=4, bad=["vid1"])
    data, args = tmp_path / "data", ("encode.codec=h264", "ray.num_cpus=2")
    reference = run_job(job_cfg(data, tmp_path / "ref", *args)).manifest
    # A local run must not try to join whatever RAY_ADDRESS names (here: nothing listens).
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    marker = tmp_path / "killed-once"
    manifest = run_job(ray_cfg(data, tmp_path / "ray", "kill_once_hook", marker, *args)).manifest
    assert marker.exists(), "no worker was killed: the test hook did not run"
    assert manifest["samples"] == 12 and not manifest["failed_shards"]
    # Same config, default codec: the same bytes with 2 Ray workers as in this process.
    assert manifest["shards"] == reference["shards"]
    assert len({s.key for s in read_all(tmp_path / "ray")}) == 12
    assert os.environ["RAY_ADDRESS"] == "127.0.0.1:1"  # restored for the caller


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_shard_ray import ray_cfg
from datagen.runner import run_job
run_job(ray_cfg(Path({data!r}), Path({out!r}), "hang_hook", Path({marker!r}), "ray.num_cpus=1"))
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_shard_worker_dies_with_its_driver(tmp_path):
    tiny_dataset(tmp_path / "data", videos=2)
    marker = tmp_path / "worker.pid"
    code = DRIVER.format(tests=TESTS, data=str(tmp_path / "data"), out=str(tmp_path / "out"),
                         marker=str(marker))  # fmt: skip
    driver = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    worker = None
    try:
        deadline = time.monotonic() + 180
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver exited before its task started"
            time.sleep(0.2)
        worker = int(marker.read_text())
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        # Ray alone takes about 20 s to notice; the driver watch in the worker is immediate.
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the shard worker outlived its driver"
    finally:
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # whatever else the driver started
