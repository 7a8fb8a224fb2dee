"""Per-task guidance picked from a sweep of ``genprop-eval`` reports (validation cases)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.cli import parse_guidance, value_for
from evaluation.guidance import guidance_spec, main, pick_per_task, read_sweep_run


def _report(folder: Path, guidance, metrics: dict) -> Path:
    (folder / "genprop").mkdir(parents=True)
    (folder / "genprop" / "run.json").write_text(json.dumps({"options": {"guidance": guidance}}))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _avg(removal: float, tracking: float, outpainting: float) -> dict:
    """A metrics.json as genprop-eval writes it (only the fields the sweep reads)."""
    averages = {
        "removal": {"genprop": {"PSNR_edit": removal, "PSNR_m": 30.0}},
        "tracking": {"genprop": {"J_obj+fx": tracking, "J_obj": 0.9}},
        "outpainting": {"genprop": {"PSNR_edit": outpainting}},
    }
    return {"averages": averages}


def test_each_task_gets_the_scale_with_its_best_headline_metric() -> None:
    runs = {3.0: _avg(17.0, 0.20, 21.0), 5.0: _avg(18.5, 0.26, 20.0), 8.0: _avg(18.0, 0.29, 18.0)}
    best = pick_per_task(runs)
    assert {t: b["guidance"] for t, b in best.items()} == {
        "removal": 5.0,
        "tracking": 8.0,
        "outpainting": 3.0,
    }
    assert best["tracking"]["metric"] == "J_obj+fx" and best["tracking"]["values"][3.0] == 0.20
    # Three different winners: the lowest is the default, the others are named.
    spec = guidance_spec(best)
    assert spec == "3,removal=5,tracking=8"
    g = parse_guidance(spec)  # the spec is what genprop-eval --guidance accepts
    assert [value_for(g, t) for t in ("removal", "tracking", "outpainting", "edit")] == [
        5.0,
        8.0,
        3.0,
        3.0,
    ]


def test_ties_go_to_the_lower_scale_and_the_most_common_winner_is_the_default() -> None:
    runs = {5.0: _avg(18.0, 0.25, 20.0), 12.0: _avg(18.0, 0.30, 19.0)}
    best = pick_per_task(runs)
    assert best["removal"]["guidance"] == 5.0
    assert guidance_spec(best) == "5,tracking=12"
    with pytest.raises(ValueError, match="no task"):
        guidance_spec({})


def test_cli_reads_reports_writes_choice_and_rejects_mixed_runs(tmp_path: Path, capsys) -> None:
    a = _report(tmp_path / "g3", {"*": 3.0}, _avg(17.0, 0.20, 21.0))
    b = _report(tmp_path / "g5", 5.0, _avg(18.5, 0.26, 20.0))  # older reports: a bare number
    assert read_sweep_run(b)[0] == 5.0
    assert main([str(a), str(b), "--out", str(tmp_path / "best.json")]) == 0
    out = capsys.readouterr().out
    assert "--guidance 5,outpainting=3" in out and "| tracking | J_obj+fx |" in out
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["spec"] == "5,outpainting=3"
    assert best["per_task"]["outpainting"]["values"] == {"3": 21.0, "5": 20.0}
    mixed = _report(tmp_path / "gm", {"*": 5.0, "tracking": 8.0}, _avg(1, 0.1, 1))
    with pytest.raises(ValueError, match="one scale for every task"):
        read_sweep_run(mixed)
    with pytest.raises(FileNotFoundError, match=r"run\.json"):
        read_sweep_run(tmp_path)
    with pytest.raises(SystemExit, match="two sweep folders"):
        main([str(a), str(a)])
