"""genprop-data on a 2-raylet Ray cluster: both nodes work; a node killed mid-run loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import psutil
import pytest
from cluster_helpers import BIN, RAY_STATE, REPO, cli_env, wait_for

pytestmark = pytest.mark.ray_cluster
NUM_SAMPLES, PER_SHARD = 16, 2


def _raylet_pid(node: str) -> int:
    """The raylet started by this node's ``ray start --block`` process."""
    starter = psutil.Process(int((RAY_STATE / f"{node}.pid").read_text()))
    (raylet,) = [p for p in starter.children() if p.name() == "raylet"]
    return raylet.pid


def _shard_task_raylets(raylets: dict[int, str]) -> set[str]:
    """Nodes whose raylet has a worker running a shard task right now."""
    busy = set()
    for raylet_pid, node in raylets.items():
        try:
            workers = psutil.Process(raylet_pid).children()
        except psutil.NoSuchProcess:
            continue
        for worker in workers:
            try:
                if "_ray_build_shard" in " ".join(worker.cmdline()):
                    busy.add(node)
            except psutil.Error:
                continue
    return busy


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_job_uses_both_nodes_and_survives_a_killed_raylet(
    ray_cluster: dict[str, str], toy_world: Path, tmp_path: Path
) -> None:
    raylets = {_raylet_pid("head"): "head", _raylet_pid("worker"): "worker"}
    out = tmp_path / "shards"
    cmd = [
        str(BIN / "genprop-data"), "source=toyworld", f"source.root={toy_world}",
        f"output_dir={out}", f"num_samples={NUM_SAMPLES}", f"samples_per_shard={PER_SHARD}",
        "clip.frames=4", "clip.size=32", "progress=false", f"ray.address={ray_cluster['address']}",
    ]  # fmt: skip
    env = cli_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=ray_cluster["RAY_AUTH_TOKEN_PATH"])
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)  # fmt: skip
    seen: set[str] = set()
    killed = False
    try:
        deadline = time.monotonic() + 240
        while driver.poll() is None and time.monotonic() < deadline:
            seen |= _shard_task_raylets(raylets)
            if not killed and seen == {"head", "worker"}:
                worker_raylet = next(pid for pid, node in raylets.items() if node == "worker")
                os.kill(worker_raylet, signal.SIGKILL)  # the worker node dies mid-run
                killed = True
            time.sleep(0.1)
        output, _ = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
        # Bring the worker node back for the next run (the head and its address are kept),
        # once its `ray start --block` process has noticed the dead raylet and exited.
        starter = int((RAY_STATE / "worker.pid").read_text())
        if killed:
            wait_for(lambda: _gone(starter), 60, "the worker node to stop")
        subprocess.run([str(REPO / "scripts" / "ci" / "ray_cluster_up.sh")], env=cli_env(),
                       capture_output=True, timeout=240)  # fmt: skip
    assert driver.returncode == 0, output[-4000:]
    assert seen == {"head", "worker"} and killed, f"shard tasks ran on: {seen}"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == NUM_SAMPLES
    keys = []
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            keys += [m.name.rsplit(".", 1)[0] for m in tar.getmembers() if m.name.endswith(".json")]
    assert len(keys) == NUM_SAMPLES and len(set(keys)) == NUM_SAMPLES  # every sample, once
