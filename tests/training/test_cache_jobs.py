"""``genprop-cache`` as a job: kill -9 mid-run then rerun gives the bytes of an uninterrupted run;
the Ray path gives the bytes of the in-process path. One encode thread everywhere (Ray's default
for a one-CPU task), so float reduction order, hence every byte, is the same in all runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from shard_factory import write_shards
from test_cache import FRAMES, SIZE, cache_cfg

from genprop.backbones.wan.pretrained import write_tiny_wan_pipeline
from training.cache.runner import run_cache

SHARDS = 4


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Wan folder, 4 one-sample pixel shards and their cache from one uninterrupted run."""
    root = tmp_path_factory.mktemp("cache_jobs")
    pipeline = write_tiny_wan_pipeline(root / "wan", seed=0)
    write_shards(root / "px", shards=SHARDS, per_shard=1, frames=FRAMES, size=SIZE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_cache(cache_cfg(pipeline, root / "px", root / "ref", batch_size=1))
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "pipeline": pipeline, "px": root / "px", "ref": root / "ref"}


def _same_cache(a: Path, b: Path) -> None:
    tars = sorted(p.name for p in a.glob("*.tar"))
    assert len(tars) == SHARDS and tars == sorted(p.name for p in b.glob("*.tar"))
    for name in tars:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["key"] == mb["key"] and ma["samples"] == mb["samples"] == SHARDS
    assert (a / "empty_prompt.safetensors").read_bytes() == (
        b / "empty_prompt.safetensors"
    ).read_bytes()


def _command(ref: dict[str, Path], out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training.cache.cli",
        f"data.shards={ref['px']}",
        f"model.net.pretrained={ref['pipeline']}",
        f"model.net.overrides.num_frames={FRAMES}",
        f"model.net.overrides.height={SIZE}",
        f"model.net.overrides.width={SIZE}",
        "model.net.overrides.text.max_tokens=8",
        f"output_dir={out}",
        "batch_size=1",
        "progress=false",
        "ray.enabled=false",
    ]


@pytest.mark.slow
def test_kill_9_then_rerun_gives_identical_bytes(reference, tmp_path: Path) -> None:
    out = tmp_path / "lat"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        _command(reference, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("train-*.json")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    finished = list(out.glob("train-*.json"))
    assert 1 <= len(finished) < SHARDS and not (out / "manifest.json").exists()
    done = subprocess.run(_command(reference, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["samples"] == SHARDS
    assert not list(out.glob("*.tmp-*"))
    _same_cache(reference["ref"], out)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_path_gives_the_in_process_bytes(reference, tmp_path: Path) -> None:
    ray_cfg = {"enabled": True, "num_cpus": 2, "cpus_per_task": 1, "gpus_per_task": 0}
    out = tmp_path / "lat"
    cfg = cache_cfg(reference["pipeline"], reference["px"], out, batch_size=1, ray=ray_cfg)
    manifest = run_cache(cfg)
    assert manifest["samples"] == SHARDS
    _same_cache(reference["ref"], out)
