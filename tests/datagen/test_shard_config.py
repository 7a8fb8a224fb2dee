"""Bad job options: refused up front with one line naming the key, never a traceback."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from synth_records import tiny_dataset
from test_runner import job_cfg

from datagen.cli import run_shards
from datagen.job_config import ConfigError, check_job_config
from datagen.runner import run_job

REPO = Path(__file__).resolve().parents[2]

BAD_OPTIONS = [
    ("num_samples", -3),
    ("num_samples", 0),
    ("samples_per_shard", 0),
    ("num_samples", 1.5),
    ("num_samples", True),
    ("clip.frames", 0),
    ("clip.frames", -4),
    ("clip.size", 0),
    ("clip.size", [16, -2]),
    ("clip.size", [1, 2, 3]),
    ("clip.stride", 0),
    ("clip.stride", []),
    ("clip.crop", "diagonal"),
    ("filters.min_area", math.nan),
    ("filters.max_area", 2),
    ("filters.min_area", 0.7),
    ("filters.max_attempts", 0),
    ("encode.codec", "vp9"),
    ("encode.crf", 99),
    ("encode.preset", "warp"),
    ("ray.num_cpus", 0),
    ("ray.cpus_per_task", 0),
    ("ray.max_retries", -1),
    ("min_yield", 1.5),
    ("min_yield", math.inf),
    ("output_dir", ""),
]


@pytest.fixture
def data(tmp_path) -> Path:
    tiny_dataset(tmp_path / "data", videos=2)
    return tmp_path / "data"


@pytest.fixture(scope="module")
def default_cfg(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cfg")
    return OmegaConf.to_container(job_cfg(root, root / "out"), resolve=True)


@pytest.mark.parametrize(("key", "value"), BAD_OPTIONS)
def test_bad_option_is_refused_naming_its_key(default_cfg, key, value):
    cfg = copy.deepcopy(default_cfg)
    *groups, name = key.split(".")
    node = cfg
    for g in groups:
        node = node[g]
    node[name] = value
    with pytest.raises(ConfigError, match=rf"^{key}: expected"):
        check_job_config(cfg)


def test_run_job_checks_options_before_writing(data, tmp_path):
    with pytest.raises(ConfigError, match=r"^clip\.size: expected"):
        run_job(job_cfg(data, tmp_path / "out", "clip.size=[0,8]"))
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file(data, tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ConfigError, match=r"^output_dir: .*taken exists and is not a folder"):
        run_job(job_cfg(data, tmp_path / "taken"))
    with pytest.raises(ConfigError, match=r"^output_dir: .*taken exists and is not a folder"):
        run_job(job_cfg(data, tmp_path / "taken" / "below"))


def test_default_config_passes_the_checks(default_cfg):
    check_job_config(default_cfg)


def _cli(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "datagen.cli", "progress=false", "ray.enabled=false", *overrides],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _source(data: Path) -> list[str]:
    return ["source=ytvis", f"source.annotations={data / 'annotations.json'}",
            f"source.frames={data / 'JPEGImages'}"]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "status", "text"),
    [
        ("num_samples=-3", 2, "genprop-data: error: num_samples: expected an integer >= 1, got -3"),
        ("output_dir=file", 2, "genprop-data: error: output_dir: "),
        ("clip.frames=40", 1, "genprop-data: error: built 0 of 4 samples (min_yield=0.5)"),
        ("clip.frames=4", 0, "genprop-data: 4 of 4 samples in 1 shards, 0 bad videos"),
    ],
)
def test_run_shards_prints_one_line(data, tmp_path, capsys, override, status, text):
    (tmp_path / "file").write_text("x")
    out = tmp_path / ("file" if override == "output_dir=file" else "out")
    extra = [] if override == "output_dir=file" else [override]  # job_cfg sets output_dir
    cfg = job_cfg(data, out, "num_samples=4", "samples_per_shard=4", *extra)
    assert run_shards(cfg) == status
    err = capsys.readouterr().err
    assert err.startswith(text) and err.count("\n") == 1, err
    if status == 1:
        assert "clip longer than the video 32" in err  # 4 samples x 8 attempts


def test_cli_user_error_exits_2_without_traceback(data, tmp_path):
    source = [f"source.annotations={data / 'annotations.json'}", f"source.frames={data}"]
    proc = subprocess.run(
        [sys.executable, "-m", "datagen.cli", "source=ytvis", *source, "num_samples=-3"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == "genprop-data: error: num_samples: expected an integer >= 1, got -3\n"
