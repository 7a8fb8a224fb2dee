"""Byte-reproducible shards with the default H.264 codec: same config, same bytes, any CPUs.

x264's automatic threading slices frames by the number of CPUs the encoder sees, which changes
the bitstream; the encoder therefore runs single-threaded, and the container is muxed bit-exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synth_records import make_sample, tiny_dataset
from test_runner import job_cfg

from contracts.schema import decode_sample, encode_sample
from datagen.runner import run_job


def _digest(d: dict) -> str:
    return hashlib.sha256(b"".join(d[k] for k in ("sce.mp4", "target.mp4", "json"))).hexdigest()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs at least 2 CPUs to compare")
def test_h264_bytes_do_not_depend_on_the_cpus_the_encoder_sees():
    s = make_sample(T=4, H=256, W=256)  # large enough for x264 to slice across CPUs
    s.sce = np.random.default_rng(0).integers(0, 255, s.sce.shape, dtype=np.uint8)
    cpus = os.sched_getaffinity(0)
    many = _digest(encode_sample(s))
    try:
        os.sched_setaffinity(0, {min(cpus)})
        one = _digest(encode_sample(s))
    finally:
        os.sched_setaffinity(0, cpus)
    assert one == many
    assert b"threads=1 " in encode_sample(s)["sce.mp4"]  # x264's own record of its settings


def test_h264_container_has_no_version_or_time_stamps():
    raw = encode_sample(make_sample())["target.mp4"]
    assert b"Lavf" not in raw  # muxer version string (fflags=+bitexact)
    assert decode_sample(encode_sample(make_sample())).target.shape == (5, 34, 46, 3)


def test_two_runs_of_the_default_codec_give_identical_shards(tmp_path):
    tiny_dataset(tmp_path / "data", videos=3)
    args = ("encode.codec=h264", "num_samples=6", "samples_per_shard=2", "clip.size=[48,64]")
    a = run_job(job_cfg(tmp_path / "data", tmp_path / "a", *args)).manifest
    b = run_job(job_cfg(tmp_path / "data", tmp_path / "b", *args)).manifest
    assert a["config"]["encode"]["codec"] == "h264" and a["samples"] == 6
    assert a["shards"] == b["shards"]  # names, sizes and sha256
    for s in a["shards"]:
        tar_a, tar_b = (tmp_path / d / s["tar"] for d in "ab")
        assert tar_a.read_bytes() == tar_b.read_bytes()


JOB_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_runner import job_cfg
from datagen.runner import run_job
m = run_job(job_cfg(Path({data!r}), Path(sys.argv[1]), *{args!r})).manifest
print(json.dumps(m["shards"]))
"""


def test_shard_bytes_do_not_depend_on_leftover_heap_contents(tmp_path):
    """glibc fills fresh allocations with a given byte: any read of uninitialised memory shows."""
    tiny_dataset(tmp_path / "data", videos=3)
    args = ["encode.codec=h264", "num_samples=6", "samples_per_shard=3", "clip.size=[48,64]"]
    code = JOB_SCRIPT.format(
        tests=str(Path(__file__).parent), data=str(tmp_path / "data"), args=args
    )
    shards = []
    for perturb in ("85", "170"):
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / perturb)],
            env=env, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        shards.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert shards[0] == shards[1] and len(shards[0]) == 2
