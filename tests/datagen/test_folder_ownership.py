"""Folders ``genprop-data`` and ``genprop-toyworld benchmark`` do not own, and two runs in one.

A command writes only a new or empty folder, or one whose owner marker it wrote for the same
config; anything else is refused with one line (exit 2) before any work, and even with
``overwrite=true`` / ``--force`` the user's other files stay. A second run into a folder in use is
refused naming the holder's pid. A full disk ends in one line and leaves no temporary.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from synth_records import tiny_dataset
from test_runner import job_cfg

import datagen.runner
from contracts.ownership import MARKER, FolderLock
from datagen.cli import run_shards
from datagen.job_config import ConfigError
from datagen.runner import JobFailed, run_job
from datagen.toyworld import WorldConfig, write_benchmark
from datagen.toyworld.cli import main as toyworld_main

TESTS = Path(__file__).parent
USER_FILES = {
    "manifest.json": b'{"mine": true}',
    "errors.jsonl": b"my log\n",
    "notes.tmp-1": b"draft",
    "shard-000000.tar": b"another tool's tar",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    tiny_dataset(root, videos=3)
    return root


def user_folder(path: Path) -> Path:
    path.mkdir()
    for name, content in USER_FILES.items():
        (path / name).write_bytes(content)
    return path


def contents(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def test_foreign_folder_is_refused_in_one_line_and_left_alone(data, tmp_path, capsys):
    out = user_folder(tmp_path / "theirs")
    assert run_shards(job_cfg(data, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genprop-data: error: output_dir: ") and "\n" not in err
    assert f"{out} is not empty and was not written by genprop-data" in err
    assert contents(out) == USER_FILES


def test_overwrite_writes_our_files_and_keeps_the_users_others(data, tmp_path):
    out = user_folder(tmp_path / "theirs")
    (out / "shard-000009.json").write_text('{"my": "stats"}')
    manifest = run_job(job_cfg(data, out, "overwrite=true")).manifest
    assert manifest["samples"] == 12
    left = contents(out)
    assert left["notes.tmp-1"] == b"draft" and left["shard-000009.json"] == b'{"my": "stats"}'
    assert json.loads(left[MARKER])["tool"] == "genprop-data"
    # The folder is ours now: the same config resumes without overwrite.
    assert run_job(job_cfg(data, out)).manifest["shards"] == manifest["shards"]


def test_other_config_is_refused_before_any_work(data, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def no_shard(plan, spec, ids):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(datagen.runner, "build_shard", no_shard)
    with pytest.raises(JobFailed):  # seed 0 finishes no shard, but the folder is seed 0's
        run_job(job_cfg(data, out))
    before = contents(out)
    # Another seed is refused up front: not even the (here missing) dataset is opened.
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=r"out holds shards of another config \(\.genprop-own"):
        run_job(job_cfg(missing, out, "seed=1"))
    assert contents(out) == before


def test_second_run_into_a_folder_in_use_is_refused_naming_the_pid(data, tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        assert run_shards(job_cfg(data, out, "seed=1")) == 2
        err = capsys.readouterr().err.strip()
        assert f"{out} is in use by another run (pid {holder.pid} on" in err and "\n" not in err
        assert not (out / "manifest.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run_job(job_cfg(data, out, "seed=1")).manifest["samples"] == 12


HOLD = """
import sys
from contracts.ownership import FolderLock
FolderLock(sys.argv[1], command="genprop-data seed=0").acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def _no_file_space() -> None:
    """In the child: every write past 0 bytes fails (EFBIG), as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


def test_full_disk_at_start_is_one_line_and_leaves_no_temporary(data, tmp_path):
    out = tmp_path / "out"
    overrides = ["source=ytvis", f"source.annotations={data / 'annotations.json'}",
                 f"source.frames={data / 'JPEGImages'}", f"output_dir={out}", "num_samples=4",
                 "samples_per_shard=2", "clip.frames=4", "clip.size=[16,16]",
                 "encode.codec=lossless", "ray.enabled=false", "progress=false"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", "from datagen.cli import main; main()", *overrides],
        capture_output=True,
        text=True,
        preexec_fn=_no_file_space,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode in (1, 2), proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert err.startswith("genprop-data: error: ") and "\n" not in err, err[-2000:]
    assert "File too large" in err and str(out) in err
    assert not [p.name for p in out.rglob("*") if ".tmp-" in p.name]


CFG = WorldConfig(width=32, height=32, num_frames=3)


def bench(out: Path, *extra: str) -> int:
    args = ["benchmark", "--out", str(out), "--size", "32x32", "--frames", "3"]
    return toyworld_main([*args, "--cases-per-task", "1", "--tasks", "tracking", *extra])


def test_benchmark_refuses_a_foreign_folder_without_force(tmp_path, capsys):
    out = tmp_path / "cases"
    (out / "tracking_000").mkdir(parents=True)
    (out / "tracking_000" / "my_notes.txt").write_text("keep me")
    (out / "notes.tmp-1").write_text("draft")
    assert bench(out) == 2
    err = capsys.readouterr().err.strip()
    assert f"--out: {out} is not empty and was not written by genprop-toyworld" in err
    assert "--force" in err and "\n" not in err
    assert (out / "tracking_000" / "my_notes.txt").read_text() == "keep me"
    assert bench(out, "--force") == 0  # the user asked: the case folder of that name is rewritten
    assert (out / "notes.tmp-1").read_text() == "draft"
    assert json.loads((out / "index.json").read_text())["cases"][0]["id"] == "tracking_000"


def test_benchmark_rerun_is_a_noop_and_other_parameters_need_force(tmp_path, capsys):
    out = tmp_path / "cases"
    assert bench(out) == 0
    stamp = (out / "index.json").stat().st_mtime_ns
    assert bench(out) == 0 and (out / "index.json").stat().st_mtime_ns == stamp
    assert bench(out, "--seed", "5") == 2
    assert "holds benchmark cases written with other parameters" in capsys.readouterr().err
    assert (out / "index.json").stat().st_mtime_ns == stamp
    assert bench(out, "--seed", "5", "--force") == 0


def test_benchmark_refuses_a_folder_being_written(tmp_path, capsys):
    out = tmp_path / "cases"
    with FolderLock(out, command="genprop-toyworld benchmark"):
        assert bench(out) == 2
    assert "is in use by another run" in capsys.readouterr().err
    assert write_benchmark(out, CFG, cases_per_task=1, tasks=("tracking",), progress=None) == out
