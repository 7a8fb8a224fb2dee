"""User errors in genprop-eval: one line on stderr, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from genprop_helpers import one_line_error
from synthetic_cases import write_cases

from evaluation import cli
from genprop import GenPropModel, preset


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cpu_test model folder ``model/`` and one removal case under ``cases/``."""
    root = tmp_path_factory.mktemp("eval_cli")
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(root / "model")
    write_cases(root / "cases", tasks=("removal",), T=4)
    return root


@pytest.mark.parametrize(
    "extra",
    [["--steps", "0"], ["--guidance", "inf"], ["--guidance", "nan"], ["--injection-weight", "-1"]],
)
def test_eval_bad_sampling_flags(inputs: Path, capsys, extra: list[str]) -> None:
    argv = ["--cases", str(inputs / "cases"), "--model", str(inputs / "model")]
    err = one_line_error(capsys, cli.main, [*argv, "--baselines", "none", *extra])
    assert err.startswith("genprop-eval: error:") and extra[0] in err


def test_eval_out_that_is_a_file(inputs: Path, capsys) -> None:
    blocker = inputs / "report_file"
    blocker.write_text("x")
    argv = ["--cases", str(inputs / "cases"), "--out", str(blocker)]
    assert "must be a folder" in one_line_error(capsys, cli.main, argv)
