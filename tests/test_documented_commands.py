"""Every Hydra command line in the README and docs/ parses as written (copy-paste works).

The shell removes one level of quotes before Hydra sees an override, so
``data.shards='/d/shard-{000000..000099}.tar'`` reaches Hydra unquoted and its braces are a
grammar error; the docs write ``'data.shards="/d/shard-{000000..000099}.tar"'``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = Path(__file__).resolve().parents[1]
HYDRA_COMMANDS = ("genprop-train", "genprop-data", "genprop-cache", "genprop-plan")
FENCE = re.compile(r"```(?:bash|sh|console)?\n(.*?)```", re.S)


def documented_commands() -> list[tuple[str, str]]:
    """``(file, command line)`` for every Hydra command in a fenced block (continuations joined)."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in FENCE.findall(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" # ")[0].strip()
                if line.split(" ", 1)[0] in HYDRA_COMMANDS:
                    found.append((doc.name, line))
    return found


COMMANDS = documented_commands()


def test_the_docs_have_hydra_commands():
    assert len(COMMANDS) >= 10
    assert any("shard-{" in line for _, line in COMMANDS)


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_documented_command_parses(doc, line):
    parser = OverridesParser.create()
    for arg in shlex.split(line)[1:]:
        if arg.startswith("-") or "=" not in arg or arg == "...":
            continue
        parser.parse_override(arg)  # raises OverrideParseException with the grammar error
