"""Real-footage benchmarks of ``genprop-eval --benchmark NAME`` (``toy`` is the case-folder path
of :mod:`evaluation.cli` and is not a board).

Each board is a module with one function, ``run(args: argparse.Namespace) -> dict``, that scores
the methods on its data and writes ``args.out/metrics.json`` and ``args.out/metrics.md`` (use
:func:`evaluation.boards.common.write_board_report`); it returns the ``metrics.json`` payload's
paths (``{"json": ..., "md": ...}``). ``genprop-eval`` has checked and filled in:

- ``args.data: Path``: the benchmark's data folder (``--data``, present);
- ``args.methods: list[tuple[str, Path]]``: the ``--method NAME=DIR`` outputs (folders present,
  names unique and different from ``genprop`` and the baselines);
- ``args.model: Path | None`` and ``args.genprop``: the loaded export with its sampling options
  (:class:`evaluation.boards.common.GenPropRun`), or None without ``--model``;
- ``args.baselines: str``: ``all``, ``none`` or a comma list (:func:`~evaluation.boards.common.
  select_baselines` checks it against what the board can run);
- ``args.out: Path``: the report folder (not a file);
- ``args.lpips``, ``args.dinov2``, ``args.clip``: ``Path | None``, local feature-model folders;
- ``args.device``, ``args.seed`` and the other sampling flags as parsed.

A user error raises :class:`evaluation.boards.common.BoardError` (one line naming the file); a
video that cannot be scored is skipped, listed in the report's errors and counted.

Boards are imported only when asked for, so one that fails to import does not stop the others.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module providing ``run(args)``.
BOARDS: dict[str, str] = {
    "davis2017": "evaluation.boards.davis2017",
    "prove-m": "evaluation.boards.prove_m",
    "editverse": "evaluation.boards.editverse",
}


def load_board(name: str) -> ModuleType:
    """The module of board ``name`` (a key of :data:`BOARDS`)."""
    if name not in BOARDS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BOARDS)}")
    return importlib.import_module(BOARDS[name])
