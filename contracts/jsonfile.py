"""Reading annotation JSON files with error messages that name the file, line and column.

Annotation files are untrusted: before parsing, the file must be a regular file (a FIFO would
block) of at most ``max_bytes`` bytes (:data:`MAX_JSON_BYTES` by default, 1 GiB: the largest
public video-segmentation annotation files are a few hundred MB; readers take a
``max_json_bytes`` option to raise it). Parsing errors, nesting too deep for the parser
(``[[[[...``), integers with more digits than Python converts, and running out of memory all
become a :class:`JsonFileError` naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 1 << 30


class JsonFileError(ValueError):
    """A JSON file is missing, unreadable, too large or not valid JSON; the message names it."""


def read_json(path: Path, *, what: str = "annotation file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file.

    Args:
        path: the file.
        what: what the file is, for the message (``"annotation file"``, ``"SA-V masklet file"``).
        max_bytes: refuse larger files before reading them.

    Raises:
        JsonFileError: missing file, not a regular file, too large, unreadable, a syntax error
            (with line/column), or nesting deeper than the parser allows.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise JsonFileError(f"{what} not found: {path}") from e
    except OSError as e:
        raise JsonFileError(f"{path}: cannot read {what} ({e.strerror})") from e
    if not stat.S_ISREG(st.st_mode):
        raise JsonFileError(f"{what} is not a file: {path}")
    if st.st_size > max_bytes:
        raise JsonFileError(
            f"{path}: {what} is {st.st_size} bytes, above the limit of {max_bytes} bytes "
            "(raise it with the reader option max_json_bytes)"
        )
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise JsonFileError(
            f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    except UnicodeDecodeError as e:
        raise JsonFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except RecursionError as e:
        raise JsonFileError(
            f"{path}: JSON nested too deeply to parse (an annotation file is a few levels deep)"
        ) from e
    except MemoryError as e:
        raise JsonFileError(f"{path}: out of memory while parsing {what}") from e
    except ValueError as e:  # e.g. an integer literal with more digits than Python converts
        raise JsonFileError(f"{path}: invalid JSON value ({e})") from e
    except OSError as e:
        raise JsonFileError(f"{path}: cannot read {what} ({e})") from e
