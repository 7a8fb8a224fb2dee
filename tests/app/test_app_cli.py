"""``genprop-app`` command line: bad arguments are one line and exit 2, before any serving."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genprop_app.cli import launch_kwargs, main
from genprop_app.uploads import Limits


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("genprop-app: error: ")
    return err


def test_missing_model_folder(capsys, tmp_path: Path) -> None:
    err = _error(capsys, ["--model", str(tmp_path / "nope")])
    assert "nope: model folder not found" in err


def test_bad_flags(capsys, tiny_export: Path, tmp_path: Path) -> None:
    assert "--share" in _error(capsys, ["--model", str(tiny_export), "--share", "maybe"])
    err = _error(capsys, ["--model", str(tiny_export), "--max-frames", "0"])
    assert "--max-frames must be >= 1, got 0" in err
    err = _error(capsys, ["--model", str(tiny_export), "--cases", str(tmp_path)])
    assert "no index.json; --cases must be a folder written by genprop-toyworld" in err
    assert "--port" in _error(capsys, ["--model", str(tiny_export), "--port", "70000"])


def test_nothing_phones_home_or_is_shared(tmp_path: Path) -> None:
    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"
    from genprop_app.cli import build_parser

    args = build_parser().parse_args(["--model", "m"])
    assert args.share is False and args.host == "127.0.0.1"
    kwargs = launch_kwargs(Limits(max_upload_bytes=5 << 20), tmp_path)
    assert kwargs["max_file_size"] == 5 << 20 and kwargs["allowed_paths"] == [str(tmp_path)]
