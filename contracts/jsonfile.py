"""The one JSON reader for untrusted files, with error messages that name the file, line and column.

Annotation files, model configs, case indexes and pipeline folders' configs are all untrusted:
before parsing, the file must be a regular file (a FIFO would block) of at most ``max_bytes``
bytes (:data:`MAX_JSON_BYTES` by default, 1 GiB: the largest public video-segmentation annotation
files are a few hundred MB; dataset readers take a ``max_json_bytes`` option to raise it;
:func:`read_json_object` reads config and metadata files, kilobytes, with
:data:`MAX_CONFIG_BYTES`). Parsing errors, nesting too deep for the parser (``[[[[...``),
integers with more digits than Python converts, and running out of memory all become one error
naming the file (:class:`JsonFileError`, or the caller's own type).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 1 << 30
MAX_CONFIG_BYTES = 64 << 20  # config and metadata files are kilobytes; refuse before reading


class JsonFileError(ValueError):
    """A JSON file is missing, unreadable, too large or not valid JSON; the message names it."""


def read_json(
    path: Path,
    *,
    what: str = "annotation file",
    max_bytes: int = MAX_JSON_BYTES,
    error: type[Exception] = JsonFileError,
) -> Any:
    """Parse a JSON file.

    Args:
        path: the file.
        what: what the file is, for the message (``"annotation file"``, ``"SA-V masklet file"``).
        max_bytes: refuse larger files before reading them.
        error: the exception type raised (callers keep their own error types).

    Raises:
        error: missing file, not a regular file, too large, unreadable, a syntax error (with
            line/column), or nesting deeper than the parser allows.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise error(f"{what} not found: {path}") from e
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from e
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} is not a file: {path}")
    if st.st_size > max_bytes:
        raise error(
            f"{path}: {what} is {st.st_size} bytes, above the limit of {max_bytes} bytes "
            "(raise it with the reader option max_json_bytes)"
        )
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise error(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except RecursionError as e:
        raise error(
            f"{path}: JSON nested too deeply to parse (an annotation file is a few levels deep)"
        ) from e
    except MemoryError as e:
        raise error(f"{path}: out of memory while parsing {what}") from e
    except ValueError as e:  # e.g. an integer literal with more digits than Python converts
        raise error(f"{path}: invalid JSON value ({e})") from e
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e})") from e


def read_json_object(
    path: Path,
    *,
    what: str = "JSON file",
    error: type[Exception] = ValueError,
    max_bytes: int = MAX_CONFIG_BYTES,
) -> dict[str, Any]:
    """The JSON object in ``path`` (a config or metadata file): :func:`read_json`, and an object.

    Raises:
        error: as :func:`read_json`, or the file holds another JSON value than an object.
    """
    data = read_json(path, what=what, max_bytes=max_bytes, error=error)
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
