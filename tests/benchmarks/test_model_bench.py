"""benchmarks.model (``make bench-model``): one tiny run on CPU writes its JSON row."""

from __future__ import annotations

import json

from benchmarks.model import main


def test_benchmark_runs_on_cpu_test(tmp_path):
    assert (
        main(
            [
                "--preset",
                "cpu_test",
                "--iters",
                "1",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    (row,) = json.loads((tmp_path / "b.json").read_text())
    assert row["i2v_step_s"] > 0 and row["genprop_step_s"] > 0 and row["sample_s_per_frame"] > 0
