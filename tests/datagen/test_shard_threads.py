"""Shard tasks use exactly as many threads as they hold CPUs (OpenCV, torch, OpenMP / BLAS env).

Oversubscription (each of N tasks on N cores spawning a thread per core) made two Ray tasks at
once slower than one; these tests pin each task's thread settings to its ``cpus_per_task``.
"""

from __future__ import annotations

import cv2
import pytest
from synth_records import tiny_dataset
from test_runner import job_cfg

import contracts.jobs
from datagen.runner import run_job
from datagen.shard_task import (
    THREAD_ENV_VARS,
    limited_threads,
    shard_task_options,
    task_runtime_env,
    task_threads,
)


def test_task_threads_are_the_whole_cpus_at_least_one() -> None:
    assert [task_threads(c) for c in (0.25, 0.5, 1, 1.0, 1.9, 2, 3.5)] == [1, 1, 1, 1, 1, 2, 3]


def test_runtime_env_sets_every_thread_variable_and_keeps_the_callers() -> None:
    env = task_runtime_env(
        {"env_vars": {"OMP_NUM_THREADS": "4", "OTHER": "x"}, "working_dir": "."}, 2
    )
    assert env["working_dir"] == "."
    assert env["env_vars"]["OMP_NUM_THREADS"] == "4"  # the caller's own choice wins
    assert env["env_vars"]["OTHER"] == "x"
    others = set(THREAD_ENV_VARS) - {"OMP_NUM_THREADS"}
    assert {k: env["env_vars"][k] for k in others} == dict.fromkeys(others, "2")
    # On the job's own Ray only env_vars go per task (Ray merges them with the job's).
    opts = shard_task_options(
        {"cpus_per_task": 0.5}, {"env_vars": {"A": "1"}, "working_dir": "."}, job_level=True
    )
    assert opts["num_cpus"] == 0.5
    assert opts["runtime_env"] == {"env_vars": {**dict.fromkeys(THREAD_ENV_VARS, "1"), "A": "1"}}
    caller = shard_task_options({"cpus_per_task": 2}, {"working_dir": "."}, job_level=False)
    assert caller["runtime_env"]["working_dir"] == "."
    assert caller["runtime_env"]["env_vars"] == dict.fromkeys(THREAD_ENV_VARS, "2")


def test_in_process_limit_is_applied_and_restored() -> None:
    torch = pytest.importorskip("torch")
    cv2.setNumThreads(3)
    torch_before = torch.get_num_threads()
    with limited_threads(1) as settings:
        assert settings["cv2"] == cv2.getNumThreads() == 1
        assert settings["torch"] == torch.get_num_threads() == 1
    assert cv2.getNumThreads() == 3
    assert torch.get_num_threads() == torch_before


@pytest.mark.ray
def test_ray_shard_tasks_run_with_their_cpus_worth_of_threads(tmp_path, monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    tiny_dataset(tmp_path / "data", videos=2)
    seen: list[dict] = []
    real_update = contracts.jobs.Progress.update

    def update(self, stats):  # the stats each Ray task returned, with its worker's threads
        seen.append(stats["threads"])
        real_update(self, stats)

    monkeypatch.setattr(contracts.jobs.Progress, "update", update)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        for cpus, threads in ((2, 2), (0.5, 1)):
            seen.clear()
            cfg = job_cfg(
                tmp_path / "data",
                tmp_path / f"out-{cpus}",
                "ray.enabled=true",
                f"ray.cpus_per_task={cpus}",
                "num_samples=4",
                "samples_per_shard=2",
            )
            assert run_job(cfg).manifest["samples"] == 4
            assert len(seen) == 2
            env = dict.fromkeys(THREAD_ENV_VARS, str(threads))
            for got in seen:  # torch is loaded in workers (by albumentations): limited too
                assert got == {"cv2": threads, "torch": threads, "env": env}, cpus
    finally:
        ray.shutdown()
