"""benchmarks.propagate_memory (``make bench-propagate-memory``): the shape of its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.propagate_memory import main


@pytest.mark.slow  # two child processes that import torch (~5 s)
def test_a_tiny_run_writes_one_row_per_length_and_the_ratio(tmp_path: Path) -> None:
    out = tmp_path / "mem"
    argv = ["--frames", "2", "--size", "16x24", "--modes", "stream", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["frames"] == 2 and report["size"] == [16, 24] and report["modes"] == ["stream"]
    assert [(r["mode"], r["frames"]) for r in report["rows"]] == [("stream", 2), ("stream", 8)]
    for row in report["rows"]:
        assert row.keys() == {"mode", "frames", "seconds", "peak_rss_mb"}
    assert set(report["ratio"]) == {"stream"}
    table = out.with_suffix(".md").read_text()
    assert table.startswith("| mode | peak RSS, 2 frames (MB) | peak RSS, 8 frames (MB) |")
    assert table.count("\n| stream |") == 1


@pytest.mark.parametrize("bad", [["--modes", "fast"], ["--frames", "1"], ["--size", "8"]])
def test_bad_arguments_are_refused(tmp_path: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*bad, "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert not (tmp_path / "x.json").exists()
