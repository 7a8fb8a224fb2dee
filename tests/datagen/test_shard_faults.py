"""Faults inside a shard job: one bad sample, one bad shard or a run that yields nothing.

Every per-sample failure (absurd record numbers, an encoder error, a bug while building) is a
counted entry of ``errors.jsonl`` and the manifest, never a lost shard; a shard that keeps failing
is reported with its error while the others are written; a run that builds too few samples fails
with the counts per reason.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from synth_records import make_record
from test_runner import job_cfg, read_all

import datagen.runner
import datagen.shard_task
from contracts.schema import encode_sample
from datagen.record import BadVideo, Reader, VideoRecord
from datagen.runner import JobFailed, run_job


class MemoryReader(Reader):
    """A reader over in-memory records (the readers' own validation is bypassed on purpose)."""

    source = "synthetic"

    def __init__(self, records: list[VideoRecord]) -> None:
        self.records = {r.video_id: r for r in records}

    def list_videos(self) -> list[str]:
        return sorted(self.records)

    def load(self, video_id: str) -> VideoRecord:
        if video_id not in self.records:
            raise BadVideo(video_id, "not found")
        return self.records[video_id]


@pytest.fixture
def memory_source(monkeypatch):
    """Serve the job's source from ``records`` (set by the test) instead of a dataset on disk."""
    holder: dict[str, list[VideoRecord]] = {}
    datagen.shard_task._builder.cache_clear()
    monkeypatch.setattr(datagen.shard_task, "_reader", lambda _: MemoryReader(holder["records"]))
    yield holder
    datagen.shard_task._builder.cache_clear()


def cfg(tmp_path: Path, *overrides: str):
    """A tiny in-process H.264 job (the data paths are unused with ``memory_source``)."""
    return job_cfg(tmp_path, tmp_path / "out", "encode.codec=h264", "encode.preset=ultrafast",
                   "clip.size=[32,32]", "clip.frames=4", *overrides)  # fmt: skip


def errors_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fps", [1e300, math.nan, math.inf, -6.0, 0.0, 5000.0])
def test_absurd_fps_is_a_counted_bad_video_and_no_shard_is_lost(memory_source, tmp_path, fps):
    bad = make_record("bad")
    object.__setattr__(bad, "fps", fps)  # past any check a reader or the record itself makes
    memory_source["records"] = [make_record("good0"), bad, make_record("good1")]
    manifest = run_job(cfg(tmp_path)).manifest
    assert manifest["samples"] == 12 and len(manifest["shards"]) == 4
    assert not manifest["failed_shards"] and manifest["attempt_failures"]["bad_video"] >= 1
    (bad,) = errors_of(tmp_path / "out")
    assert bad["video"] == "bad" and "field 'fps'" in bad["reason"] and bad["kind"] == "bad_video"
    assert {s.meta["video_id"] for s in read_all(tmp_path / "out")} == {"good0", "good1"}


def test_encoder_failure_is_a_counted_error_and_the_sample_is_rebuilt(
    memory_source, tmp_path, monkeypatch
):
    memory_source["records"] = [make_record("good"), make_record("poison")]

    def encode(sample, **kw):
        if sample.meta["video_id"] == "poison":
            raise OverflowError("integer too large to convert")
        return encode_sample(sample, **kw)

    monkeypatch.setattr(datagen.shard_task, "encode_sample", encode)
    manifest = run_job(cfg(tmp_path)).manifest
    assert manifest["samples"] == 12 and manifest["attempt_failures"]["encode_error"] >= 1
    (err,) = errors_of(tmp_path / "out")
    assert err["video"] == "poison" and "cannot encode: OverflowError" in err["reason"]
    assert {s.meta["video_id"] for s in read_all(tmp_path / "out")} == {"good"}


def test_a_failing_shard_is_reported_the_others_written_and_a_rerun_resumes(
    memory_source, tmp_path, monkeypatch
):
    memory_source["records"] = [make_record("a"), make_record("b")]
    real = datagen.runner.build_shard

    def broken(plan, spec, ids):
        if plan.name == "shard-000001":
            raise RuntimeError("disk on fire")
        return real(plan, spec, ids)

    monkeypatch.setattr(datagen.runner, "build_shard", broken)
    with pytest.raises(JobFailed, match=r"1 shard\(s\) failed .* shard-000001: RuntimeError: disk"):
        run_job(cfg(tmp_path))
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["failed_shards"] == [
        {"shard": "shard-000001", "reason": "RuntimeError: disk on fire"}
    ]
    assert sorted(s["name"] for s in manifest["shards"]) == [
        "shard-000000", "shard-000002", "shard-000003"
    ]  # fmt: skip
    monkeypatch.setattr(datagen.runner, "build_shard", real)
    again = run_job(cfg(tmp_path)).manifest
    assert again["samples"] == 12 and not again["failed_shards"]
    kept = {s["name"]: s["sha256"] for s in manifest["shards"]}
    assert {s["name"]: s["sha256"] for s in again["shards"] if s["name"] in kept} == kept


def test_a_run_without_samples_fails_with_counts_per_reason(memory_source, tmp_path):
    memory_source["records"] = [make_record("short", T=3), make_record("also_short", T=3)]
    with pytest.raises(JobFailed) as info:
        run_job(cfg(tmp_path, "num_samples=4", "filters.max_attempts=2"))
    message = str(info.value)
    assert "built 0 of 4 samples (min_yield=0.5)" in message
    assert "clip longer than the video 8" in message and "\n" not in message
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["attempt_failures"] == {"clip_longer_than_video": 8}
    # min_yield=0 accepts an empty result (the counts stay in the manifest).
    empty = run_job(cfg(tmp_path, "num_samples=4", "filters.max_attempts=2", "min_yield=0"))
    assert empty.manifest["samples"] == 0


def test_too_few_annotated_frames_and_partial_yield(memory_source, tmp_path):
    sparse = make_record("sparse", T=12)
    sparse = VideoRecord(**{**sparse.__dict__, "annotated": (0, 2, 4, 6, 8, 10)})
    memory_source["records"] = [make_record("ok"), sparse]
    with pytest.raises(JobFailed, match="too few consecutive annotated frames for a clip"):
        run_job(cfg(tmp_path, "min_yield=1.0", "filters.max_attempts=1"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert 0 < manifest["samples"] < 12
    assert manifest["attempt_failures"]["too_few_annotated_frames"] == 12 - manifest["samples"]
