"""Read a JSON object from a file with a clear error naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 64 * 2**20  # config and metadata files are kilobytes; refuse before reading


def read_json_object(
    path: Path,
    *,
    what: str = "JSON file",
    error: type[Exception] = ValueError,
    max_bytes: int = MAX_JSON_BYTES,
) -> dict[str, Any]:
    """The JSON object in ``path``.

    Args:
        path: the file.
        what: what the file is, for the message (e.g. ``"JSON config"``).
        error: exception type raised (callers keep their own error types).
        max_bytes: larger files are refused without being read.

    Raises:
        error: the file is unreadable, too large, not JSON (also: nested too deeply to parse), or
            not a JSON object.
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {what} of {size} bytes, above the limit of {max_bytes} bytes")
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: not a readable {what} ({e})") from e
    except RecursionError:
        raise error(f"{path}: not a readable {what} (nested too deeply)") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
