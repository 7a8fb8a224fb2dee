"""User-error reporting shared by the ``genprop-*`` command-line tools.

A user error (bad flag, unreadable input, invalid model folder) prints one line
``<prog>: error: <message>`` to stderr and exits with :data:`EXIT_USAGE`, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from genprop.sampler import check_sampling_options

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
