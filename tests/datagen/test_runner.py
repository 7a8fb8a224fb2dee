"""The whole job: manifest, errors, determinism, resume after kill -9, Ray with a dying worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import webdataset as wds
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from synth_records import tiny_dataset

from contracts.schema import decode_sample
from contracts.tasks import TASKS
from datagen.record import DatasetError
from datagen.runner import run_job

CONF = str(Path(__file__).resolve().parents[2] / "conf" / "datagen")


def job_cfg(data: Path, out: Path, *overrides: str) -> DictConfig:
    """The real genprop_data config, shrunk to a tiny lossless in-process job."""
    ann, frames = data / "annotations.json", data / "JPEGImages"
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            "genprop_data",
            [
                "source=ytvis",
                f"source.annotations={ann}",
                f"source.frames={frames}",
                f"output_dir={out}",
                "num_samples=12",
                "samples_per_shard=3",
                "clip.frames=6",
                "clip.size=[32,40]",
                "encode.codec=lossless",
                "ray.enabled=false",
                "progress=false",
                *overrides,
            ],
        )


@pytest.fixture
def data(tmp_path) -> Path:
    tiny_dataset(tmp_path / "data", videos=4, bad=["vid1"])
    return tmp_path / "data"


def read_all(out: Path):
    samples = []
    for tar in sorted(out.glob("shard-*.tar")):
        samples += [decode_sample(d) for d in wds.WebDataset(str(tar), shardshuffle=False)]
    return samples


def test_job_writes_shards_manifest_and_errors(data, tmp_path):
    out = tmp_path / "out"
    manifest = run_job(job_cfg(data, out)).manifest
    assert manifest["samples"] == 12 and sum(manifest["tasks"].values()) == 12
    assert len(manifest["shards"]) == 4 and all(s["samples"] == 3 for s in manifest["shards"])
    assert set(manifest["tasks"]) <= set(TASKS) and manifest["config_hash"]
    samples = read_all(out)
    assert len({s.key for s in samples}) == 12
    for s in samples:
        m = s.meta
        assert m["source"] == "ytvis" and m["video_id"] != "2"  # video 2 (vid1) is bad
        assert s.sce.shape == (6, 32, 40, 3) and len(m["frame_indices"]) == 6
        expected = "track colored regions" if m["task"] == "tracking" else None
        assert m["prompt"] == expected or m["prompt"] in ("a video of a dog", "a video of a cat")
        if m["task"] != "outpainting":
            assert s.mask[0].any()  # the edited instance is in the first frame
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert manifest["errors"] == 1 and {e["video"] for e in errors} == {"2"}
    assert "not found" in errors[0]["reason"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["samples"] == 12 and on_disk["shards"] == manifest["shards"]


def test_rerun_skips_finished_shards_and_refuses_other_configs(data, tmp_path):
    out = tmp_path / "out"
    first = run_job(job_cfg(data, out)).manifest
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    again = run_job(job_cfg(data, out)).manifest
    assert again["shards"] == first["shards"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")} == mtimes
    with pytest.raises(ValueError, match="shards of another config"):
        run_job(job_cfg(data, out, "seed=1"))
    assert run_job(job_cfg(data, out, "seed=1", "overwrite=true")).manifest["samples"] == 12


def test_tasks_mix_and_clip_overrides(data, tmp_path):
    m = run_job(job_cfg(data, tmp_path / "o", "tasks=[tracking,outpainting]")).manifest
    assert m["tasks"] == {"tracking": 6, "outpainting": 6}  # default mix: equal weights
    m = run_job(job_cfg(data, tmp_path / "q", "mix=paper", "tasks=[outpainting]")).manifest
    assert m["tasks"] == {"outpainting": 12}
    with pytest.raises(ValueError, match="weight 0"):
        run_job(job_cfg(data, tmp_path / "r", "mix=paper", "tasks=[edit,outpainting]"))
    m = run_job(job_cfg(data, tmp_path / "p", "mix=paper", "num_samples=8")).manifest
    assert m["tasks"] == {"removal": 4, "edit": 2, "insertion": 1, "tracking": 1}


def test_demo_mix_doubles_colour_fill_and_keeps_every_task(data, tmp_path):
    from datagen.plan import task_quotas, task_weights

    default = task_weights(job_cfg(data, tmp_path / "d").mix)
    demo = task_weights(job_cfg(data, tmp_path / "e", "mix=demo").mix)
    assert set(demo) == set(default) == set(TASKS)
    assert demo["tracking"] == pytest.approx(2 * default["tracking"])
    assert task_quotas(demo, 2048) == {
        "removal": 819,
        "edit": 307,
        "insertion": 205,
        "tracking": 512,
        "outpainting": 205,
    }


def test_missing_required_option_is_a_clear_error(data, tmp_path):
    with pytest.raises(DatasetError, match=r"source\.frames"):
        run_job(job_cfg(data, tmp_path / "o", "source.frames=???"))


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_runner import job_cfg
from pathlib import Path
from datagen.runner import run_job
run_job(job_cfg(Path({data!r}), Path({out!r}), *{overrides!r}))
"""


def test_kill_9_then_rerun_gives_the_full_duplicate_free_set(data, tmp_path):
    overrides = ["num_samples=30", "samples_per_shard=2", "clip.size=[96,128]", "clip.frames=8",
                 "encode.codec=h264"]  # fmt: skip
    reference = run_job(job_cfg(data, tmp_path / "ref", *overrides)).manifest
    out = tmp_path / "out"
    code = KILL_SCRIPT.format(
        tests=str(Path(__file__).parent), data=str(data), out=str(out), overrides=overrides
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
    deadline = time.monotonic() + 60
    while len(list(out.glob("shard-*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the job finished before it could be killed"
    manifest = run_job(job_cfg(data, out, *overrides)).manifest
    keys = [s.key for s in read_all(out)]
    assert len(keys) == len(set(keys)) == 30 == manifest["samples"]
    assert not list(out.glob("*.tmp-*"))
    # Same config + seed -> same shards, byte for byte (H.264 too), however the run was
    # interrupted.
    assert manifest["shards"] == reference["shards"]
