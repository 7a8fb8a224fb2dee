"""Ctrl-C and ``kill`` end a command with one line and 128 + signal, even with Ray started."""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A console entry point that waits; "ready" on stdout once its handlers are installed.
SCRIPT = textwrap.dedent(
    """
    import sys, time
    from contracts.interrupts import console_signals

    @console_signals("genprop-test")
    def main():
        {setup}
        print("ready", flush=True)
        time.sleep(60)
        return 0

    sys.exit(main())
    """
)
RAY_SETUP = (
    "import contextlib; from contracts.jobs import ray_session; "
    "stack = contextlib.ExitStack(); stack.enter_context(ray_session({'num_cpus': 1}))"
)


def _run_and_signal(setup: str, signum: int) -> subprocess.CompletedProcess:
    code = SCRIPT.format(setup=setup)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_ends_with_one_line_and_shell_status(signum, status):
    done = _run_and_signal("pass", signum)
    assert done.returncode == status, done.stderr
    name = signal.Signals(signum).name
    assert done.stderr.strip() == (
        f"genprop-test: stopped by {name} (finished work is kept; the same command resumes it)"
    )


@pytest.mark.ray
def test_sigterm_after_ray_init_is_ours_not_rays():
    """``ray.init`` installs ``sys.exit(15)`` for SIGTERM; the job's session puts ours back."""
    done = _run_and_signal(RAY_SETUP, signal.SIGTERM)
    assert done.returncode == 143, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "genprop-test: stopped by SIGTERM" in done.stderr


def test_every_console_script_is_wrapped_under_its_own_name():
    """A new ``genprop-*`` entry point without :func:`console_signals` fails here."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) >= 9
    for prog, target in scripts.items():
        module, _, name = target.partition(":")
        main = getattr(importlib.import_module(module), name)
        assert getattr(main, "console_prog", None) == prog, f"{target} is not wrapped for {prog}"
