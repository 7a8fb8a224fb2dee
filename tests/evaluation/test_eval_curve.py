"""The quality-vs-compute curve: one genprop-eval report per scale -> table, JSON, plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.curve import main, parse_run


def _report(folder: Path, removal: float, j: float) -> None:
    folder.mkdir(parents=True)
    averages = {
        "removal": {"genprop": {"PSNR_edit": removal}, "identity": {"PSNR_edit": 1.0}},
        "tracking": {"genprop": {"J_obj+fx": j}},
    }
    (folder / "metrics.json").write_text(json.dumps({"averages": averages}))


def test_curve_tabulates_each_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _report(tmp_path / "half", 18.0, 0.2)
    _report(tmp_path / "one", 21.5, 0.3)
    out = tmp_path / "curve"
    assert main(["--run", f"1={tmp_path / 'one'}", "--run", f"0.5={tmp_path / 'half'}",
                 "--out", str(out)]) == 0  # fmt: skip
    table = json.loads((out / "curve.json").read_text())
    assert table["scales"] == [0.5, 1.0]
    rows = {(r["task"], r["metric"]): r["values"] for r in table["rows"]}
    assert rows == {("removal", "PSNR_edit"): {"0.5": 18.0, "1": 21.5},
                    ("tracking", "J_obj+fx"): {"0.5": 0.2, "1": 0.3}}  # fmt: skip
    assert "| removal | PSNR_edit | 18.000 | 21.500 |" in capsys.readouterr().out
    assert (out / "curve.md").read_text().startswith("| task | metric | 0.5× | 1× |")
    assert (out / "curve.png").stat().st_size > 0


@pytest.mark.parametrize("spec", ["1", "x=dir", "-1=dir", "2="])
def test_bad_run_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="SCALE=DIR"):
        parse_run(spec)


def test_a_missing_report_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--run", f"1={tmp_path / 'none'}", "--out", str(tmp_path / "curve")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "metrics.json: missing" in err
