"""Shard writing: atomic rename, stats as the 'finished' marker, reproducible bytes."""

from __future__ import annotations

import hashlib
import json

import pytest
import webdataset as wds
from synth_records import make_sample

from contracts.schema import decode_sample
from datagen.shards import read_stats, shard_paths, write_shard


def samples(n=3):
    return [make_sample(key=f"shard-000000_{i:06d}") for i in range(n)]


def test_write_shard_stats_and_round_trip(tmp_path):
    st = write_shard(tmp_path, "shard-000000", samples(), config_hash="abc", codec="lossless")
    tar, stats = shard_paths(tmp_path, "shard-000000")
    assert st["samples"] == 3 and st["tasks"] == {"edit": 3} and st["config_hash"] == "abc"
    assert st["sha256"] == hashlib.sha256(tar.read_bytes()).hexdigest()
    assert json.loads(stats.read_text()) == st
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.json", "shard-000000.tar"]
    got = [decode_sample(d) for d in wds.WebDataset(str(tar), shardshuffle=False)]
    assert [g.key for g in got] == st["keys"]


def test_same_samples_same_bytes(tmp_path):
    a = write_shard(tmp_path / "a", "s", samples(), config_hash="h", codec="lossless")
    b = write_shard(tmp_path / "b", "s", samples(), config_hash="h", codec="lossless")
    assert a["sha256"] == b["sha256"]


def test_read_stats_requires_tar_stats_and_same_config(tmp_path):
    write_shard(tmp_path, "s", samples(1), config_hash="h", codec="lossless")
    assert read_stats(tmp_path, "s", "h") is not None
    assert read_stats(tmp_path, "s", "other") is None
    (tmp_path / "s.tar").unlink()
    assert read_stats(tmp_path, "s", "h") is None


def test_failure_while_writing_leaves_no_shard(tmp_path):
    def broken():
        yield from samples(2)
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        write_shard(tmp_path, "s", broken(), config_hash="h", codec="lossless")
    assert list(tmp_path.iterdir()) == []
