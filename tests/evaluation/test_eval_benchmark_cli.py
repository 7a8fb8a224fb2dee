"""``genprop-eval --benchmark NAME``: the flags, the dispatch to a board's ``run(args)``, the shared
board helpers and the report format."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pytest
from genprop_helpers import one_line_error

from evaluation import boards, cli
from evaluation.boards.common import (
    BoardError,
    parse_methods,
    prepare_run_dir,
    select_baselines,
    write_board_report,
)


@pytest.fixture
def fake_board(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Register a board ``davis2017`` -> module ``fake_board`` that records its ``args``."""
    seen: dict = {}

    def run(args):
        seen["args"] = args
        per_video = {"m": {"v1": {"J": 0.5}, "v2": {"J": math.nan}}}
        return write_board_report(args.out, "fake", per_video, errors=["v3: skipped, unreadable"])

    module = types.ModuleType("fake_board")
    module.run = run
    monkeypatch.setitem(sys.modules, "fake_board", module)
    monkeypatch.setitem(boards.BOARDS, "davis2017", "fake_board")
    return seen


def test_board_gets_checked_args_and_its_report_is_printed(
    fake_board: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "m").mkdir()
    argv = ["--benchmark", "davis2017", "--data", str(tmp_path / "data"), "--out", str(tmp_path)]
    extra = ["--method", f"mine={tmp_path / 'm'}", "--lpips", "L", "--dinov2", "D", "--clip", "C"]
    assert cli.main([*argv, *extra]) == 0
    args = fake_board["args"]
    assert args.methods == [("mine", tmp_path / "m")]
    assert args.genprop is None and args.model is None and args.baselines == "all"
    assert (args.lpips, args.dinov2, args.clip) == (Path("L"), Path("D"), Path("C"))
    captured = capsys.readouterr()
    assert "# GenProp evaluation: fake" in captured.out and "wrote" in captured.out
    assert "genprop-eval: warning: v3: skipped, unreadable" in captured.err


def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    return one_line_error(capsys, cli.main, argv)


def test_flag_mistakes_are_one_line(
    fake_board: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = ["--benchmark", "davis2017", "--out", str(tmp_path / "o")]
    assert "--cases CASES is required" in _err(capsys, ["--out", str(tmp_path / "o")])
    assert "needs --data" in _err(capsys, board)
    assert "--data folder not found" in _err(capsys, [*board, "--data", str(tmp_path / "none")])
    data = ["--data", str(tmp_path)]
    assert "--cases is for --benchmark toy" in _err(capsys, [*board, *data, "--cases", "x"])
    assert "toy reads --cases" in _err(capsys, ["--cases", str(tmp_path), *data])
    assert "is already used" in _err(capsys, [*board, *data, "--method", f"genprop={tmp_path}"])
    assert "expected NAME=DIR" in _err(capsys, [*board, *data, "--method", "justaname"])
    assert "invalid choice" in _err(capsys, ["--benchmark", "nope"])
    assert "--guidance" in _err(capsys, [*board, *data, "--guidance", "nan"])
    assert "args" not in fake_board  # no board ran


def test_a_board_module_that_is_not_there_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(boards.BOARDS, "editverse", "evaluation.boards.no_such_board")
    argv = ["--benchmark", "editverse", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert "is not installed" in _err(capsys, argv)


def test_parse_methods_and_select_baselines(tmp_path: Path) -> None:
    assert parse_methods([f"a={tmp_path}", f"b={tmp_path}"]) == [("a", tmp_path), ("b", tmp_path)]
    for specs, message in (
        ([f"a={tmp_path}", f"a={tmp_path}"], "already used"),
        ([f"a={tmp_path / 'none'}"], "folder not found"),
        (["=x"], "expected NAME=DIR"),
    ):
        with pytest.raises(BoardError, match=message):
            parse_methods(specs)
    assert select_baselines("all", ("x", "y")) == ["x", "y"]
    assert select_baselines("none", ("x", "y")) == []
    assert select_baselines("y,y", ("x", "y")) == ["y"]
    with pytest.raises(BoardError, match="mask_inpaint cannot run on this benchmark"):
        select_baselines("x,mask_inpaint", ("x", "y"))


def test_write_board_report_means_over_videos_and_writes_nan_as_null(tmp_path: Path) -> None:
    per_video = {
        "a": {"v1": {"PSNR": 20.0, "J": 0.25}, "v2": {"PSNR": 30.0, "J": math.nan}},
        "b": {"v1": {"PSNR": 10.0}},
    }
    paths = write_board_report(tmp_path, "demo", per_video, frames_note="all frames", notes=["n1"])
    report = json.loads(paths["json"].read_text())
    assert report["averages"]["a"] == {"PSNR": 25.0, "J": 0.25, "n": 2.0}  # NaN ignored
    assert report["per_video"]["a"]["v2"]["J"] is None
    assert report["benchmark"] == "demo" and report["notes"] == ["n1"]
    md = paths["md"].read_text()
    assert md.startswith("# GenProp evaluation: demo\n\nall frames\n")
    assert "| a | 2 | 25.00 | 0.250 |" in md and "| v2 | 30.00 | – |" in md
    assert "## b: per video" in md and "- n1" in md


def test_prepare_run_dir_keeps_outputs_of_the_same_run_only(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w")
    (model / "config.json").write_text("{}")
    root = tmp_path / "genprop"
    prepare_run_dir(root, model, {"steps": 2})
    (root / "v").mkdir()
    (root / "v" / "00000.png").write_bytes(b"png")
    prepare_run_dir(root, model, {"steps": 2})
    assert (root / "v" / "00000.png").is_file()
    prepare_run_dir(root, model, {"steps": 3})
    assert not (root / "v" / "00000.png").exists()
