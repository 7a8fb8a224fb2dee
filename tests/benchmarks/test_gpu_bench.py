"""benchmarks.gpu (``make bench-gpu``): its pure parts on CPU, the whole run under ``gpu``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import gpu
from benchmarks.mfu import markdown_table, mfu, peak_tflops
from genprop.scale.meta_model import build_meta_model


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.05),
        ("Some Future Card", None),
    ],
)
def test_peak_tflops_by_device_name(name: str, expected: float | None) -> None:
    assert peak_tflops(name) == expected


def test_peak_tflops_override_wins_and_must_be_positive() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", 500.0) == 500.0
    with pytest.raises(ValueError, match="peak-tflops"):
        peak_tflops("NVIDIA H100", 0.0)


def test_mfu_arithmetic() -> None:
    # 989.4 TFLOP in 2 s on a 989.4 TFLOP/s card: half the peak.
    assert mfu(989.4e12, 2.0, 989.4) == pytest.approx(0.5)
    assert mfu(1e12, 1.0, None) is None
    with pytest.raises(ValueError, match="step time"):
        mfu(1e12, 0.0, 100.0)


def test_markdown_table_formats_rows_and_missing_values() -> None:
    rows = [
        {"case": "demo", "tokens": 512, "batch": 8, "step_s": 0.01234, "mfu": 0.4567},
        {"case": "wan14b", "tokens": 14040, "batch": 1, "step_s": 2.5, "mfu": None},
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[0].startswith("| case | tokens/clip |") and lines[1].startswith("|---|")
    assert "| demo | 512 | 8 | 0.012 |" in lines[2] and "45.7%" in lines[2]
    assert "| wan14b | 14,040 | 1 | 2.500 |" in lines[3] and lines[3].endswith("| - |")


def test_refuses_without_cuda(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path / "gpu")]) == 1
    assert "no CUDA device" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_unknown_case_is_refused(capsys) -> None:
    assert gpu.main(["--cases", "demo,huge"]) == 2
    assert "huge" in capsys.readouterr().err


def test_wan14b_case_has_the_published_width_at_cut_depth(tmp_path: Path) -> None:
    config = gpu.wan14b_config(
        tmp_path / "wan", layers=1, sce_blocks=1, size=(5, 32, 32), source=gpu.WAN_14B
    )
    model = build_meta_model(config).model
    assert model.backbone.dim == 5120 and model.backbone.num_blocks == 1
    assert model.backbone.image_dim == 1280  # Wan2.1-I2V's CLIP image tokens


@pytest.mark.gpu
def test_gpu_benchmark_runs_small(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    args = ["--out", str(out), "--steps", "2", "--warmup", "1", "--batch", "2"]
    args += ["--cases", "wan14b,demo", "--wan-layers", "1", "--wan-size", "9x240x416"]
    assert gpu.main(args) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert [r["case"] for r in report["rows"]] == ["wan14b", "demo"]
    for row in report["rows"]:
        assert row["step_s"] > 0 and row["peak_memory_gb"] > 0 and row["model_tflop"] > 0
        # The planner's peak for the same step, within 20 % of the measured one.
        assert row["planned_memory_gb"] == pytest.approx(row["peak_memory_gb"], rel=0.2)
    assert "| wan14b |" in out.with_suffix(".md").read_text()
