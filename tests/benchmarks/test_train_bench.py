"""benchmarks.train (``make bench-train``) runs end to end at a tiny size, writes JSON + a table."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.train import main, peak_flops


def test_bench_writes_json_and_table(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    main(
        [
            "--out",
            str(out),
            "--preset",
            "cpu_test",
            "--batch",
            "2",
            "--workers",
            "0",
            "--steps",
            "1",
            "--loader-batches",
            "2",
            "--synthetic-per-shard",
            "2",
        ]
    )
    result = json.loads(out.read_text())
    assert result["clip"] == [4, 32, 32]
    assert result["loader_samples_per_sec"] > 0 and result["train_samples_per_sec"] > 0
    assert result["ratio"] == result["loader_samples_per_sec"] / result["train_samples_per_sec"]
    assert "ratio loader / step" in out.with_suffix(".md").read_text()


def test_peak_flops_lookup() -> None:
    # The card table is benchmarks.mfu.PEAK_BF16_TFLOPS (TFLOP/s), here in FLOP/s.
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("Some CPU") is None
