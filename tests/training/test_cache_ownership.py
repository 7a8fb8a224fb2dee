"""``genprop-cache`` writes only a folder it owns, for one cache config, one run at a time.

A folder that is not empty and holds no ``genprop-cache`` marker is refused (one line, exit 2),
and with ``overwrite=true`` only the cache's own files are written; a folder whose marker names
another dtype or model is refused up front, even when that run finished no shard; a second run
into a folder in use is refused naming the holder's pid.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from shard_factory import write_shards
from test_cache import FRAMES, SIZE, cache_cfg

import training.cache.runner
from contracts.ownership import MARKER
from genprop.backbones.wan.pretrained import write_tiny_wan_pipeline
from training.cache.cli import run
from training.cache.key import LatentCacheError
from training.cache.runner import CacheJobFailed, run_cache

USER_FILES = {
    "manifest.json": b'{"mine": true}',
    "notes.tmp-1": b"draft",
    "train-000000.tar": b"another tool's tar",
}
HOLD = """
import sys
from contracts.ownership import FolderLock
FolderLock(sys.argv[1], command="genprop-cache dtype=fp16").acquire()
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cache_owner")
    pipeline = write_tiny_wan_pipeline(root / "wan", seed=0)
    write_shards(root / "px", shards=1, per_shard=1, frames=FRAMES, size=SIZE)
    return {"pipeline": pipeline, "px": root / "px"}


def contents(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def test_foreign_folder_refused_in_one_line_then_overwrite_keeps_other_files(
    inputs, tmp_path, capsys
):
    out = tmp_path / "theirs"
    out.mkdir()
    for name, content in USER_FILES.items():
        (out / name).write_bytes(content)
    cfg = cache_cfg(inputs["pipeline"], inputs["px"], out)
    assert run(OmegaConf.create(cfg)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"genprop-cache: error: output_dir: {out} is not empty and was not")
    assert "overwrite=true" in err and "\n" not in err
    assert contents(out) == USER_FILES
    manifest = run_cache(cfg | {"overwrite": True})
    assert manifest["samples"] == 1
    assert contents(out)["notes.tmp-1"] == b"draft"
    assert json.loads((out / MARKER).read_text())["cache"]["dtype"] == "bf16"


def test_other_dtype_is_refused_even_when_the_first_run_finished_no_shard(
    inputs, tmp_path, monkeypatch
):
    out = tmp_path / "lat"

    def fails(source, spec):
        raise RuntimeError("worker lost")

    with monkeypatch.context() as m:
        m.setattr(training.cache.runner, "cache_shard", fails)
        with pytest.raises(CacheJobFailed):
            run_cache(cache_cfg(inputs["pipeline"], inputs["px"], out, dtype="fp16"))
    before = contents(out)
    with pytest.raises(LatentCacheError, match=r"another model or dtype \(\.genprop-owner\.json: "
                                               r"dtype fp16, .*this job: dtype bf16"):  # fmt: skip
        run_cache(cache_cfg(inputs["pipeline"], inputs["px"], out, dtype="bf16"))
    assert contents(out) == before
    assert run_cache(cache_cfg(inputs["pipeline"], inputs["px"], out, dtype="fp16"))["samples"] == 1


def test_second_run_into_a_folder_in_use_is_refused_naming_the_pid(inputs, tmp_path):
    out = tmp_path / "lat"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        with pytest.raises(LatentCacheError, match=rf"in use by another run \(pid {holder.pid} "):
            run_cache(cache_cfg(inputs["pipeline"], inputs["px"], out))
        assert not (out / "manifest.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
