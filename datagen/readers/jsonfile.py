"""Reading annotation JSON files with error messages that name the file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonFileError(ValueError):
    """A JSON file is missing, unreadable or not valid JSON; the message names the file."""


def read_json(path: Path, *, what: str = "annotation file") -> Any:
    """Parse a JSON file.

    Args:
        path: the file.
        what: what the file is, for the message (``"annotation file"``, ``"SA-V masklet file"``).

    Raises:
        JsonFileError: missing file, not a file, unreadable, or a syntax error (with line/column).
    """
    if not path.exists():
        raise JsonFileError(f"{what} not found: {path}")
    if not path.is_file():
        raise JsonFileError(f"{what} is not a file: {path}")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise JsonFileError(
            f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    except UnicodeDecodeError as e:
        raise JsonFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise JsonFileError(f"{path}: cannot read {what} ({e})") from e


def as_int(value: Any, *, where: str) -> int:
    """An integer field that may be stored as a float (SA-V writes ``483.0``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not float(value).is_integer()
    ):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return int(value)
