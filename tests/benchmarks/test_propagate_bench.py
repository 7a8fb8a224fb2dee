"""benchmarks.propagate (``make bench-propagate``): its smallest run on CPU writes its rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.propagate import MODES, main

FIELDS = {"mode", "dtype", "offload", "ranks", "run_s", "runs_s", "s_per_frame_step",
          "peak_memory_mb", "time_ratio"}  # fmt: skip


def _run(tmp_path: Path, modes: list[str]) -> dict:
    out = tmp_path / "bench"
    argv = ["--modes", ",".join(modes), "--steps", "1", "--repeats", "1", "--warmup", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.with_suffix(".md").read_text().count("\n| ") == len(modes) + 1  # title row + rows
    return json.loads(out.with_suffix(".json").read_text())


def _check_rows(report: dict, modes: list[str]) -> None:
    assert report["device"] == "cpu" and report["size"] == [9, 48, 48]
    assert report["steps"] == 1 and report["repeats"] == 1 and "ru_maxrss" in report["memory"]
    rows = report["rows"]
    assert [r["mode"] for r in rows] == modes
    for row in rows:
        assert row.keys() >= FIELDS, row
        assert {k: row[k] for k in ("dtype", "offload", "ranks")} == MODES[row["mode"]]
        assert len(row["runs_s"]) == 1 and row["run_s"] > 0
        # one run of 9 frames x 1 step: the per-frame-per-step figure is derived from it
        assert row["s_per_frame_step"] == pytest.approx(row["run_s"] / 9)
        assert row["peak_memory_mb"] >= 0
    assert rows[0]["time_ratio"] == 1.0


def test_smallest_run_writes_rows_and_fields(tmp_path: Path) -> None:
    modes = ["fp32", "bf16+offload-model"]
    _check_rows(_run(tmp_path, modes), modes)


@pytest.mark.slow
def test_every_mode_including_two_sequence_parallel_ranks(tmp_path: Path) -> None:
    _check_rows(_run(tmp_path, list(MODES)), list(MODES))


def test_bad_modes_are_refused(tmp_path: Path, capsys) -> None:
    assert main(["--modes", "bf16", "--out", str(tmp_path / "x")]) == 2  # no fp32 reference
    assert main(["--modes", "fp32,fp8", "--out", str(tmp_path / "x")]) == 2
    assert "--modes" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_gpu_checks_propagate_part_parses_and_fits_the_check() -> None:
    from benchmarks import gpu_check
    from benchmarks.propagate import _parser

    args = _parser().parse_args(["--device", "cuda", *gpu_check.PROPAGATE_ARGS])
    assert args.wan_size == (17, 480, 832) and args.steps == 2
    assert sum(gpu_check.BUDGET_S.values()) <= 9 * 60 and gpu_check.BUDGET_S["propagate"] > 0
