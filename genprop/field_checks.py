"""Checks of single config fields, shared by :mod:`genprop.config_checks` and the backbone families.

A model folder's ``config.json`` is untrusted input: every numeric field is checked for its type
and range before anything is allocated, and a bad value gives one :class:`ConfigError` naming the
field: ``field 'backbone.dim': expected an integer in [1, 65536], got nan``.

This module imports nothing of GenProp, so each backbone family
(``genprop/backbones/<family>/config.py``) checks its own config with it while
:mod:`genprop.configs` and :mod:`genprop.config_checks` import the families.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

BIG = 2**16  # widths, heads, depths, patch sizes and clip sizes stay below this


class ConfigError(ValueError):
    """A config field has the wrong type or an out-of-range value."""


def config_error(field: str, expected: str, value: Any) -> ConfigError:
    """The error for ``field``: ``field 'F': expected E, got V``."""
    return ConfigError(f"field {field!r}: expected {expected}, got {value!r}")


def check_int(value: Any, field: str, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) in ``[low, high]``, else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise config_error(field, f"an integer in [{low}, {high}]", value)
    return value


def check_float(
    value: Any, field: str, low: float, high: float, *, low_open: bool = False
) -> float:
    """``value`` if it is a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > low if low_open else value >= low) and value <= high:
        return float(value)
    bracket = "(" if low_open else "["
    raise config_error(field, f"a finite number in {bracket}{low:g}, {high:g}]", value)


def check_choice(value: Any, field: str, choices: tuple[Any, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise config_error(field, f"one of {list(choices)}", value)


def check_bool(value: Any, field: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise config_error(field, "true or false", value)


def check_optional_str(value: Any, field: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is None or a non-empty path string."""
    if value is not None and not (isinstance(value, str) and value and "\x00" not in value):
        raise config_error(field, "null or a non-empty path string", value)


def check_subfolder(value: Any, field: str) -> None:
    """A sub-folder name must stay inside its parent folder: relative and without ``..``."""
    check_optional_str(value, field)
    if value is None:
        return
    for pure in (PurePosixPath(value), PureWindowsPath(value)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            raise config_error(field, "a relative sub-folder name without '..'", value)
