"""Checked access to the numeric and id fields of annotation files.

Annotation files are untrusted input: a field may hold ``NaN``, ``Infinity``, ``1e308``, an int
with 400 digits, a string, a list or ``true`` where a number is expected. Every reader takes its
numbers through these helpers, so a bad value becomes a one-line :class:`FieldError` naming the
file, the field and what was expected, before it can reach a C decoder, an allocation or an
encoder. Readers turn the error into :class:`~datagen.record.BadVideo` for the video concerned.

Bounds used by every reader (a real dataset is far inside them):

- frame rates in ``(0, MAX_FPS]`` frames per second;
- durations in ``(0, MAX_DURATION_S]`` seconds;
- ids: integers of at most :data:`MAX_ID_DIGITS` digits, or non-empty strings of at most
  :data:`MAX_ID_CHARS` characters without control characters.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

MAX_FPS = 1000.0
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_ID_DIGITS = 18
MAX_ID_CHARS = 200

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = 40
_REPR.maxother = 40
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 4
_REPR.maxlong = 24


class FieldError(ValueError):
    """A field of an annotation file has the wrong type or an absurd value."""


def brief(value: object) -> str:
    """A short ``repr`` of a value for messages (deep or huge JSON values are abbreviated)."""
    return _REPR.repr(value)


def is_number(value: object) -> bool:
    """True for a JSON number (``int`` or ``float``, not ``bool``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_int(
    value: Any, *, where: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An integer field, which may be stored as an integer-valued float (SA-V writes ``483.0``).

    Args:
        value: the JSON value.
        where: file and field for the message, e.g. ``"train.json: videos[3].width"``.
        minimum, maximum: inclusive bounds, or ``None`` for none.

    Raises:
        FieldError: not a finite integer-valued number, or out of bounds.
    """
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise FieldError(f"{where}: expected an integer, got {brief(value)}")
        value = int(value)
    elif not isinstance(value, int) or isinstance(value, bool):
        raise FieldError(f"{where}: expected an integer, got {brief(value)}")
    if minimum is not None and value < minimum:
        raise FieldError(f"{where}: expected an integer >= {minimum}, got {brief(value)}")
    if maximum is not None and value > maximum:
        raise FieldError(f"{where}: expected an integer <= {maximum}, got {brief(value)}")
    return value


def as_float(value: Any, *, where: str, minimum: float, maximum: float) -> float:
    """A finite number in ``(minimum, maximum]``; the lower bound is exclusive.

    Raises:
        FieldError: not a number, not finite, or out of bounds.
    """
    if not is_number(value):
        raise FieldError(f"{where}: expected a number, got {brief(value)}")
    try:
        x = float(value)
    except OverflowError:  # an int too large for a float
        x = math.inf
    if not math.isfinite(x) or not minimum < x <= maximum:
        raise FieldError(
            f"{where}: expected a finite number in ({minimum:g}, {maximum:g}], got {brief(value)}"
        )
    return x


def as_fps(value: Any, *, where: str) -> float:
    """A frame rate in ``(0, MAX_FPS]`` frames per second."""
    return as_float(value, where=where, minimum=0.0, maximum=MAX_FPS)


def as_id(value: Any, *, where: str) -> str:
    """A video / object / category id, as the string records use.

    Accepts integers (or integer-valued floats) of at most :data:`MAX_ID_DIGITS` digits and
    non-empty strings of at most :data:`MAX_ID_CHARS` printable characters.

    Raises:
        FieldError: any other value.
    """
    if isinstance(value, str):
        if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
            raise FieldError(
                f"{where}: expected a non-empty printable id of at most {MAX_ID_CHARS} "
                f"characters, got {brief(value)}"
            )
        return value
    bound = 10**MAX_ID_DIGITS - 1
    return str(as_int(value, where=where, minimum=-bound, maximum=bound))
