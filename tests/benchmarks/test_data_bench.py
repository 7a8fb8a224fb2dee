"""benchmarks.data (``make bench-data``), smallest mode: JSON structure and consistent numbers.

No timing thresholds: only that every measured number exists, is positive, and agrees with the
others (medians inside their repetitions, shares summing to one, lossless larger than H.264).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from benchmarks.data.datasets import bench_datasets
from benchmarks.data.run import main
from contracts.tasks import TASKS

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DAVIS = SHARED / "vos"
SCHOOLGIRLS = SHARED / "mp4_masks" / "schoolgirls.mp4"
BUILD_STAGES = ("load", "decode", "resize_crop", "augment", "recipe", "other")


def check_rate(entry: dict) -> None:
    """A median throughput lies within its repetitions and matches its seconds per sample."""
    reps = entry["reps_samples_per_s"]
    assert all(r > 0 for r in reps)
    assert min(reps) - 1e-3 <= entry["samples_per_s"] <= max(reps) + 1e-3
    assert entry["s_per_sample"] == pytest.approx(1 / entry["samples_per_s"], rel=1e-2)


def check_ceiling(ray: dict, reps: int) -> None:
    """The Ray speedup read against the median machine ceiling (before, between reps, after)."""
    ceilings = [ray["cpu_ceiling_before"], *ray["cpu_ceiling_reps"], ray["cpu_ceiling_after"]]
    assert len(ceilings) == reps + 1
    for ceiling in ceilings:
        assert ceiling["speedup_2_vs_1"] == pytest.approx(
            2 * ceiling["one_process_s"] / ceiling["two_processes_s"], rel=2e-2
        )
    median = statistics.median(c["speedup_2_vs_1"] for c in ceilings)
    assert ray["cpu_ceiling_median"] == pytest.approx(median, rel=1e-2)
    assert ray["speedup_over_ceiling"] == pytest.approx(ray["speedup_2_vs_1"] / median, rel=1e-2)
    assert ray["speedup_over_ceiling_target"] == 0.9
    met = ray["speedup_over_ceiling"] >= 0.9
    assert ray["speedup_over_ceiling_target_met"] == met


def check_dataset(ds: dict, reps: int, *, with_ray: bool) -> None:
    check_rate(ds["decode_floor"])
    assert len(ds["decode_floor"]["reps_samples_per_s"]) == reps
    assert ds["decode_floor"]["frames_per_sample"] >= ds["config"]["frames"]
    assert ds["decode_floor"]["masks_per_sample"] >= ds["config"]["frames"]
    stages = ds["stages"]
    for codec in ("h264", "lossless"):
        names = [*BUILD_STAGES, f"encode_{codec}", f"write_{codec}"]
        total = stages[f"total_{codec}"]["s_per_sample"]
        assert sum(stages[n]["s_per_sample"] for n in names) == pytest.approx(total, rel=1e-3)
        key = "share" if codec == "h264" else "share_lossless"
        shares = [stages[n][key] for n in BUILD_STAGES]
        shares += [stages[f"{part}_{codec}"]["share"] for part in ("encode", "write")]
        assert sum(shares) == pytest.approx(1.0, abs=1e-2)
    for name in ("load", "decode", "augment", "recipe", "encode_h264", "encode_lossless"):
        assert stages[name]["s_per_sample"] > 0, name
    assert set(ds["recipes"]) == set(TASKS)
    for task, r in ds["recipes"].items():
        assert r["calls"] + r["skips"] == ds["stage_pass"]["samples"], task
        if r["calls"]:
            assert r["s_per_call"] > 0
    assert ds["stage_pass"]["samples"] == ds["config"]["num_samples"]
    size = ds["bytes_per_sample"]
    assert 0 < size["h264"] < size["lossless"]
    assert size["h264_end_to_end_shards"] > 0
    inproc = ds["end_to_end"]["in_process"]
    check_rate(inproc)
    assert inproc["samples_per_job"] == ds["config"]["num_samples"]
    floor_s = ds["decode_floor"]["s_per_sample"]
    assert inproc["time_ratio_vs_floor"] == pytest.approx(
        inproc["s_per_sample"] / floor_s, rel=1e-2
    )
    floor_enc = ds["decode_floor"]["decode_encode_s_per_sample"]
    assert floor_enc > floor_s
    ratio = inproc["time_ratio_vs_decode_encode_floor"]
    assert ratio == pytest.approx(inproc["s_per_sample"] / floor_enc, rel=1e-2)
    assert inproc["ratio_target_met"] == (ratio <= 1.5)
    assert inproc["cpu_s_per_sample"] > 0
    mem = ds["memory"]["in_process_peak_rss_mb"]
    assert 0 < mem["after_imports"] <= mem["after_n_jobs"] <= mem["after_3n_job"]
    assert ds["memory"]["worker_peak_rss_mb"] >= mem["after_3n_job"]
    assert ds["memory"]["target_met"] == (ds["memory"]["worker_peak_rss_mb"] <= 1536)
    if with_ray:
        ray = ds["end_to_end"]["ray"]
        assert ray["warmup_job_s"] > 0 and ray["warmup_one_task_job_s"] > 0
        for mode in ("two_tasks", "one_task"):
            check_rate(ray[mode])
        speedup = ray["two_tasks"]["samples_per_s"] / ray["one_task"]["samples_per_s"]
        assert ray["speedup_2_vs_1"] == pytest.approx(speedup, rel=1e-2)
        assert ray["speedup_target_met"] == (ray["speedup_2_vs_1"] >= 1.7)
        assert ray["shards_per_job"] >= 2
        check_ceiling(ray, reps)
        assert ray["worker_peak_rss_mb"] and min(ray["worker_peak_rss_mb"]) > 0


@pytest.mark.ray
@pytest.mark.slow  # ~4 min on 2 cores: the whole quick benchmark (make bench-data measures it)
def test_quick_benchmark_writes_consistent_json_and_table(tmp_path, capsys) -> None:
    out = tmp_path / "bench" / "data.json"
    samples = ["--samples-root", str(SHARED)] if SHARED.is_dir() else []
    assert main(["--out", str(out), "--quick", "--reps", "2", *samples]) == 0
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["repetitions"] == 2
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["python"]
    assert report["ray"]["startup_s"] > 0
    assert report["driver_peak_rss_mb"] > 0
    check_dataset(report["datasets"]["toyworld"], 2, with_ray=True)
    if (DAVIS / "JPEGImages" / "bmx-trees").is_dir():
        check_dataset(report["datasets"]["davis"], 2, with_ray=False)
        assert "ray on davis" in report["skipped"]
    else:
        assert "davis" in report["skipped"]
    assert "bedroom_640x360" in report["skipped"]  # --quick skips the 32x640x360 clips
    if SCHOOLGIRLS.is_file():  # through the mp4_masks reader, also on a 3-video copy
        girls = report["datasets"]["schoolgirls"]
        check_dataset(girls, 2, with_ray=False)
        assert girls["config"]["source"] == "mp4_masks"
        sizes = girls["memory"]["dataset_sizes_peak_rss_mb"]
        assert sizes["videos"] == [1, 3] and min(sizes["peak_rss_mb"]) > 0
        assert sizes["growth"] == pytest.approx(
            sizes["peak_rss_mb"][1] / sizes["peak_rss_mb"][0], rel=1e-2
        )
        proj = report["projection_sav"]
        assert proj["measured_on"] == "schoolgirls"
        per = proj["sav_core_s_per_sample"]
        assert per["total"] > 0
        assert per["total"] == pytest.approx(per["decode"] + per["rest"], abs=2e-3)
        hours = proj["core_hours"]
        assert hours["4"] == pytest.approx(4 * hours["1"], rel=1e-2)
        assert hours["1"] == pytest.approx(per["total"] * 50_583 / 3600, rel=1e-2)
    else:
        assert "schoolgirls" in report["skipped"]
    table = (out.parent / "data.md").read_text()
    assert table in capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("| metric"))
    assert header.count("|") == len(report["datasets"]) + 2
    assert "decode floor (samples/s)" in table and "Ray speedup 2 vs 1 task" in table
    assert "target pipeline <= 1.5x floor met" in table
    assert "target Ray speedup / ceiling >= 0.9 met" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reps", "0"], "--reps must be >= 1"),
        (["--datasets", "davis", "kitti"], "--datasets: unknown ['kitti']"),
        (["--no-ray", "--ray-cluster", "127.0.0.1:1"], "--ray-cluster needs the Ray"),
        (["--samples-root", "no/such/folder"], "--samples-root: no/such/folder is not a directory"),
    ],
)
def test_bad_arguments_are_a_clear_error(tmp_path, capsys, args, message) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x.json"), *args])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_without_samples_root_only_the_toy_world_is_measured(tmp_path) -> None:
    found, skipped = bench_datasets(tmp_path, quick=True, samples_root=None)
    assert list(found) == ["toyworld"]
    assert set(skipped) == {"davis", "schoolgirls", "bedroom_640x360"}
    assert all("--samples-root" in why for why in skipped.values())


def test_an_empty_samples_root_skips_each_real_dataset_with_its_reason(tmp_path) -> None:
    root = tmp_path / "samples"
    root.mkdir()
    found, skipped = bench_datasets(tmp_path / "work", quick=False, samples_root=root)
    assert list(found) == ["toyworld"]
    assert "lacks ['bmx-trees', 'tennis']" in skipped["davis"]
    assert "schoolgirls.mp4" in skipped["schoolgirls"]
    assert "bedroom.mp4 not found" in skipped["bedroom_640x360"]
