"""User-error reporting shared by the ``genprop-*`` command-line tools.

A user error (bad flag, unreadable input, invalid model folder) prints one line
``<prog>: error: <message>`` to stderr and exits with :data:`EXIT_USAGE`, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import NoReturn

from genprop.sampling_options import (
    PRESERVE_MODES,
    PRESERVE_SOURCES,
    PreserveConfig,
    check_sampling_options,
)

EXIT_USAGE = 2
# Flag of each sampling option, for :func:`check_sampling_flags` messages.
SAMPLING_FLAGS = {
    "steps": "--steps",
    "guidance": "--guidance",
    "injection_weight": "--injection-weight",
}


class UsageError(Exception):
    """Bad command-line input; the message is one line naming the file and the fix."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block); ``--help`` is unchanged."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message> (see --help)`` and exit with :data:`EXIT_USAGE`."""
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def check_sampling_flags(
    *, steps: int | None, guidance: float | None, injection_weight: float | None
) -> None:
    """Check the sampling flags that were given (``None``: the sampler default).

    Raises:
        UsageError: naming the flag, e.g. ``--guidance: expected a finite number ..., got nan``.
    """
    given = {"steps": steps, "guidance": guidance, "injection_weight": injection_weight}
    defaults = {"steps": 1, "guidance": 1.0, "injection_weight": 1.0}
    values = {k: defaults[k] if v is None else v for k, v in given.items()}
    try:
        check_sampling_options(**values)
    except ValueError as e:
        name, _, rest = str(e).partition(":")
        raise UsageError(f"{SAMPLING_FLAGS.get(name, name)}:{rest}") from None


def _task_list(text: str) -> list[str]:
    """``"outpainting,edit"`` -> ``["outpainting", "edit"]``; ``"none"`` -> ``[]``."""
    return [] if text.strip().lower() == "none" else [t.strip() for t in text.split(",") if t]


def add_preserve_flags(p: argparse.ArgumentParser) -> None:
    """``--preserve MODE`` (+ ``--preserve-source``, ``-dilate``, ``-blur``, ``-threshold``,
    ``-opening``, ``-link-radius``): see genprop.inference.preserve."""
    p.add_argument(
        "--preserve",
        choices=PRESERVE_MODES,
        default=None,
        help="keep the input outside the predicted edit mask (default: the model's own setting)",
    )
    p.add_argument("--preserve-dilate", type=int, default=None, help="mask dilation, cells")
    p.add_argument("--preserve-blur", type=float, default=None, help="mask blur sigma, cells")
    p.add_argument(
        "--preserve-source",
        choices=PRESERVE_SOURCES,
        default=None,
        help="where the edit is: the MPD mask, the output's change from the input, or both",
    )
    p.add_argument(
        "--preserve-threshold",
        type=float,
        default=None,
        help="change: pixels in (0, 1), or latent units",
    )
    p.add_argument(
        "--preserve-opening", type=int, default=None, help="change: opening radius, cells"
    )
    p.add_argument(
        "--preserve-link-radius",
        type=int,
        default=None,
        help="change: keep only changes linked frame by frame to the first frame's edit, "
        "across gaps of at most this many cells (0 = keep every change)",
    )
    p.add_argument(
        "--preserve-fixed-region-tasks",
        type=_task_list,
        default=None,
        metavar="TASK,...|none",
        help="change: tasks whose edit region is the first frame's in every frame "
        "(e.g. outpainting); 'none' for no task",
    )


def preserve_from_args(args: argparse.Namespace, default: PreserveConfig) -> PreserveConfig | None:
    """The :class:`PreserveConfig` the flags ask for (None when no flag is given).

    Flags not given keep the value of ``default`` (the model's ``config.sampling.preserve``).

    Raises:
        UsageError: A value is out of range (names the flag).
    """
    names = (
        "dilate",
        "blur",
        "source",
        "threshold",
        "opening",
        "link_radius",
        "fixed_region_tasks",
    )
    given = {n: getattr(args, f"preserve_{n}") for n in names}
    given = {n: v for n, v in given.items() if v is not None}
    if args.preserve is None and not given:
        return None
    mode = default.mode if args.preserve is None else args.preserve
    cfg = dataclasses.replace(default, mode=mode, **given)
    try:
        cfg.check("--preserve")
    except ValueError as err:
        flag = re.sub(
            r"--preserve\.(\w+)", lambda m: "--preserve-" + m[1].replace("_", "-"), str(err)
        )
        raise UsageError(flag) from None
    return cfg
