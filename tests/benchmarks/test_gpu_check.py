"""benchmarks.gpu_check (``make gpu-check``): its parts' bookkeeping on CPU; the run needs CUDA."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check


def test_refuses_without_cuda(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "check")]) == 1
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "check").exists()


def test_a_part_reports_status_seconds_and_the_tail_of_a_failure(tmp_path: Path) -> None:
    ok = gpu_check.run_part([sys.executable, "-c", "print('fine')"], 30, tmp_path / "ok.log")
    assert ok["status"] == "ok" and ok["returncode"] == 0 and "output_tail" not in ok
    bad = [sys.executable, "-c", "import sys; print('broken here'); sys.exit(4)"]
    failed = gpu_check.run_part(bad, 30, tmp_path / "bad.log")
    assert failed["status"] == "failed" and failed["returncode"] == 4
    assert "broken here" in failed["output_tail"]
    slow = gpu_check.run_part(
        [sys.executable, "-c", "import time; time.sleep(5)"], 0.5, tmp_path / "s.log"
    )
    assert slow["status"] == "timeout" and slow["returncode"] is None and slow["seconds"] < 5


def test_junit_counts_of_a_real_pytest_run(tmp_path: Path) -> None:
    (tmp_path / "test_three.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert False\n"
        "@pytest.mark.skip(reason='x')\n"
        "def test_skipped(): pass\n"
    )
    junit = tmp_path / "out.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    gpu_check.run_part([*cmd, f"--junitxml={junit}", "-c", "/dev/null"], 60, tmp_path / "log")
    counts = gpu_check.junit_counts(junit)
    assert counts == {"tests": 3, "passed": 1, "failed": 1, "errors": 0, "skipped": 1}


def test_demo_summary_reads_genprops_means_per_task(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    averages = {
        "removal": {"genprop": {"PSNR_edit": 23.6, "n": 2.0}, "identity": {"PSNR_edit": 11.5}},
        "tracking": {"identity": {"J": 0.04}},
    }
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"averages": averages}))
    assert gpu_check.demo_summary(tmp_path) == {"removal": {"PSNR_edit": 23.6, "n": 2.0}}
