"""Fixtures for tests against a real SLURM and a real multi-node Ray cluster.

The daemons are started outside pytest, by the project's own scripts (what CI runs):

    scripts/ci/slurm_up.sh         # munge + slurmctld + slurmd, one node (root)
    scripts/ci/ray_cluster_up.sh   # 2 raylets on 127.0.0.1, address in $GENPROP_RAY_STATE/address

Tests marked ``slurm`` / ``ray_cluster`` skip, saying which script to run, when they are not up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from cluster_helpers import BIN, RAY_STATE
from shard_factory import write_shards


def slurm_node_state() -> str | None:
    """The state of the first SLURM node (``idle``, ``mixed``, ...) or ``None`` if unreachable."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


@pytest.fixture(scope="session")
def slurm() -> str:
    """Skip unless a SLURM controller answers and its node accepts jobs."""
    state = slurm_node_state()
    if state is None:
        pytest.skip("SLURM is not running: start it with scripts/ci/slurm_up.sh (as root)")
    if not state.startswith(("idle", "mixed", "alloc", "completing")):
        pytest.skip(f"the SLURM node is {state!r}: restart it with scripts/ci/slurm_up.sh")
    return state


@pytest.fixture(scope="session")
def ray_cluster() -> dict[str, str]:
    """Skip unless the 2-raylet cluster is up; its address and the environment to reach it."""
    address_file = RAY_STATE / "address"
    if not address_file.is_file():
        pytest.skip(f"no Ray cluster: {address_file} is missing (scripts/ci/ray_cluster_up.sh)")
    for node in ("head", "worker"):
        pid_file = RAY_STATE / f"{node}.pid"
        try:
            os.kill(int(pid_file.read_text()), 0)
        except (OSError, ValueError):
            pytest.skip(f"the Ray {node} node is not running (scripts/ci/ray_cluster_up.sh)")
    return {
        "address": address_file.read_text().strip(),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(RAY_STATE / "auth_token"),
    }


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training shards for ``experiment=tiny_cpu``: 2 shards x 6 samples of 4x32x32 clips."""
    root = tmp_path_factory.mktemp("cluster_shards")
    write_shards(root / "train", shards=2, per_shard=6, frames=4, size=32)
    return root / "train"


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-video toy world (48x48, 8 frames) for genprop-data."""
    root = tmp_path_factory.mktemp("cluster_toyworld") / "world"
    subprocess.run(
        [str(BIN / "genprop-toyworld"), "write", "--out", str(root), "--videos", "4",
         "--frames", "8", "--size", "48x48"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return root
