"""Evaluation-test setup: the synthetic case folders and CLI-error checks of the genprop tests.

``tests/genprop`` holds ``synthetic_cases`` (tiny cases in the contract folder format, also used by
the propagate-CLI tests) and ``genprop_helpers``; put it on ``sys.path`` so these tests import them
when run on their own.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "genprop"))
