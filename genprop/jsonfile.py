"""Read a JSON object from a file with a clear error naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(
    path: Path, *, what: str = "JSON file", error: type[Exception] = ValueError
) -> dict[str, Any]:
    """The JSON object in ``path``.

    Args:
        path: the file.
        what: what the file is, for the message (e.g. ``"JSON config"``).
        error: exception type raised (callers keep their own error types).

    Raises:
        error: the file is unreadable, not JSON, or not a JSON object.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise error(f"{path}: not a readable {what} ({e})") from e
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
