"""genprop-train on a real SLURM: the sweep of docs/training.md, and checkpoint + requeue on a
signal."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch
from cluster_helpers import BIN, cli_env, scontrol_job, wait_for

pytestmark = pytest.mark.slurm
GENPROP_TRAIN = str(BIN / "genprop-train")


def _checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def test_readme_sweep_on_slurm(slurm: str, tiny_shards: Path, tmp_path: Path) -> None:
    # The command of docs/training.md, from a fresh folder, with no paths.* overrides.
    cmd = [
        GENPROP_TRAIN, "-m", "cluster=slurm_cpu", "experiment=tiny_cpu",
        f"data.shards={tiny_shards}", "trainer.max_steps=2,4",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=400)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    sweep = tmp_path / "outputs" / "train" / "tiny_cpu" / "multirun"
    for steps in (2, 4):
        run = sweep / f"experiment=tiny_cpu,trainer.max_steps={steps}"
        assert _checkpoint_step(run / "checkpoints" / "last.ckpt") == steps
        assert (run / "export" / "last" / "model.safetensors").is_file()
    tasks = [p for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)]
    assert len(tasks) == 2  # one SLURM array task per point


def test_signal_checkpoints_requeues_once_and_resumes(
    slurm: str, tiny_shards: Path, tmp_path: Path
) -> None:
    max_steps = 30
    cmd = [
        GENPROP_TRAIN, "-m", "cluster=slurm_cpu", "experiment=tiny_cpu", "name=requeue",
        f"data.shards={tiny_shards}", f"trainer.max_steps={max_steps}", "data.num_workers=2",
    ]  # fmt: skip
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        job_id = wait_for(lambda: _job_id("genprop-requeue"), 60, "the job to be queued")
        sweep = tmp_path / "outputs" / "train" / "requeue" / "multirun"
        wait_for(lambda: list(sweep.glob("*/tensorboard/**/events.out.tfevents*")), 180,
                 "training to start")  # fmt: skip
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=10)
        wait_for(lambda: scontrol_job(job_id).get("Restarts") == "1", 60, "the requeue")
        # A requeued job waits for SLURM's credential lifetime (AuthInfo=cred_expire); let it
        # start now.
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                       capture_output=True, timeout=10)  # fmt: skip
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out[-4000:]

    (run,) = [p for p in sweep.iterdir() if p.name.startswith("data.num_workers=2")]
    log = "".join(p.read_text() for p in sorted((sweep / ".submitit").glob("*/*_log.*")))
    assert _checkpoint_step(run / "checkpoints" / "last.ckpt") == max_steps, log[-4000:]
    assert (run / "export" / "last" / "model.safetensors").is_file()
    signal_steps = [int(s) for s in re.findall(r"signal checkpoint at step (\d+)", log)]
    assert len(signal_steps) == 1 and 0 < signal_steps[0] < max_steps, log[-3000:]
    assert len(re.findall(r"requeued SLURM job", log)) == 1, log[-3000:]
    assert "resuming from" in log and "temporary saved file already exists" not in log
    assert "killed by signal" not in log
    # The driver returns once the result is written, while the job step is still exiting.
    wait_for(lambda: scontrol_job(job_id).get("JobState") not in ("RUNNING", "COMPLETING"), 60,
             "the job to end")  # fmt: skip
    info = scontrol_job(job_id)
    assert info.get("JobState") == "COMPLETED" and info.get("Restarts") == "1", info


def _job_id(name: str) -> str | None:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True,
                         timeout=10)  # fmt: skip
    ids = out.stdout.split()
    return ids[0] if ids else None
