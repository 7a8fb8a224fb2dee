"""``python -m evaluation.compare``: two GenProp runs on the same cases, means and case wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.compare import compare, main, wins


def _metrics(removal: list[float], tracking: list[float], flow: float = 20.0) -> dict:
    cases = {f"removal_{i:03d}": "removal" for i in range(len(removal))}
    cases |= {f"tracking_{i:03d}": "tracking" for i in range(len(tracking))}
    per_case = {f"removal_{i:03d}": {"PSNR_edit": v} for i, v in enumerate(removal)}
    per_case |= {f"tracking_{i:03d}": {"J_obj+fx": v} for i, v in enumerate(tracking)}
    return {
        "case_tasks": cases,
        "per_case": {"genprop": per_case},
        "averages": {
            "removal": {
                "genprop": {"PSNR_edit": sum(removal) / len(removal)},
                "flow_propagation": {"PSNR_edit": flow},
            },
            "tracking": {"genprop": {"J_obj+fx": sum(tracking) / len(tracking)}},
        },
    }


def test_means_wins_and_reference_baselines() -> None:
    a = _metrics([25.0, 21.0, 30.0], [0.5, 0.2])
    b = _metrics([24.0, 22.0, 29.0], [0.4, 0.1])
    assert wins(a, b, "removal", "PSNR_edit") == (2, 3)
    assert wins(b, a, "tracking", "J_obj+fx") == (0, 2)
    result = compare({"latent": a, "pixel": b})
    rows = {(r["task"], r["metric"]): r for r in result["rows"]}
    assert set(rows) == {("removal", "PSNR_edit"), ("tracking", "J_obj+fx")}
    removal = rows["removal", "PSNR_edit"]
    assert removal["values"] == pytest.approx({"latent": 76 / 3, "pixel": 25.0})
    assert removal["baselines"] == {"flow_propagation": 20.0}
    assert removal["ahead"] == {"pixel": (2, 3)}
    assert rows["tracking", "J_obj+fx"]["ahead"] == {"pixel": (2, 2)}


def test_cli_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, m in (("a", _metrics([25.0], [0.5])), ("b", _metrics([24.0], [0.6]))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    run_a, run_b = f"latent={tmp_path / 'a'}", f"pixel={tmp_path / 'b'}"
    assert main(["--run", run_a, "--run", run_b, "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "compare.md").read_text()
    assert "| removal | PSNR_edit | 25.00 | 24.00 | 20.00 | 1 of 1 |" in table
    assert "| tracking | J_obj+fx | 0.500 | 0.600 | – | 0 of 1 |" in table
    assert capsys.readouterr().out == table


def test_bad_runs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps(_metrics([1.0], [0.1])))
    for argv, expected in (
        (["--run", "nodir"], "expected NAME=DIR"),
        (["--run", f"x={tmp_path / 'a'}"], "at least two runs"),
        (["--run", f"x={tmp_path / 'a'}", "--run", f"x={tmp_path / 'a'}"], "given twice"),
        (["--run", f"x={tmp_path / 'a'}", "--run", f"y={tmp_path / 'missing'}"], "missing"),
    ):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert info.value.code == 2 and expected in err, (argv, err)
