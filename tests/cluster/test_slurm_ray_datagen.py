"""scripts/slurm/ray_datagen.sbatch on a real SLURM: a manifest, and two jobs on one node."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from cluster_helpers import REPO, cli_env, scontrol_job, wait_for

pytestmark = pytest.mark.slurm
NUM_SAMPLES = 8


def _submit(toy_world: Path, out: Path, log: Path) -> str:
    # The command of docs/training.md; the sbatch options shrink the allocation to 1 CPU on 1 node.
    cmd = [
        "sbatch", "--parsable", "--nodes=1", "--cpus-per-task=1", "--mem=3G", "--time=10",
        f"--output={log}", "scripts/slurm/ray_datagen.sbatch",
        "source=toyworld", f"source.root={toy_world}", f"output_dir={out}",
        f"num_samples={NUM_SAMPLES}", "samples_per_shard=2", "clip.frames=4", "clip.size=32",
        "progress=false",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=30, check=True)  # fmt: skip
    return proc.stdout.strip().split(";")[0]


def _finished(job_id: str) -> str | None:
    state = scontrol_job(job_id).get("JobState")
    return state if state not in (None, "PENDING", "RUNNING", "CONFIGURING", "COMPLETING") else None


def test_two_datagen_jobs_on_one_node_both_complete(
    slurm: str, toy_world: Path, tmp_path: Path
) -> None:
    jobs = {i: _submit(toy_world, tmp_path / f"out{i}", tmp_path / f"job{i}.log") for i in (1, 2)}
    states = {i: wait_for(lambda j=j: _finished(j), 400, f"job {j}", 2.0) for i, j in jobs.items()}
    for i, job_id in jobs.items():
        log = (tmp_path / f"job{i}.log").read_text()
        assert states[i] == "COMPLETED", f"job {job_id}: {states[i]}\n{log[-3000:]}"
        manifest = json.loads((tmp_path / f"out{i}" / "manifest.json").read_text())
        assert manifest["samples"] == NUM_SAMPLES and len(manifest["shards"]) == 4
        assert "InvalidAuthToken" not in log
        # Its own Ray stopped and cleaned up.
        assert not (Path(tempfile.gettempdir()) / f"ray-gp-{job_id}").exists()
    # Each job stopped only its own Ray: no process of either job's temp dir is left.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not any(
        str(Path(tempfile.gettempdir()) / f"ray-gp-{job_id}") in ps for job_id in jobs.values()
    )
