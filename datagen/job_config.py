"""Up-front checks of a ``genprop-data`` job config: every bad value is one line naming its key.

:func:`check_job_config` runs before anything is read or written, so a negative
``num_samples``, a zero clip size or an ``output_dir`` that is a file is refused with a message
such as ``clip.size: expected positive integers, got [0, 256]`` instead of a traceback (or of a
run that quietly produces nothing). The ``recipes`` nodes are instantiated here once too, so a
bad recipe option (``recipes.copy_paste.scale_range: expected 0 < lo <= hi, ...``) or a task of
the mix without a recipe is refused before any worker starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.schema import CODECS, MAX_FRAMES, MAX_SIDE
from datagen.plan import task_weights
from datagen.recipes import RecipeConfigError, build_recipes

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


class ConfigError(ValueError):
    """A job option has an unusable value; the message starts with the option's key."""


def check_job_config(cfg: Mapping[str, Any], *, check_output: bool = True) -> None:
    """Validate the options of a job config (plain dict of the resolved ``genprop_data``).

    Args:
        cfg: the resolved config.
        check_output: also check ``output_dir`` (a dry run writes nothing but still predicts).

    Raises:
        ConfigError: naming the first bad key and what was expected.
    """
    _int(cfg, "num_samples", 1)
    _int(cfg, "samples_per_shard", 1)
    _int(cfg, "seed", None)
    clip = _group(cfg, "clip")
    _int(clip, "frames", 1, MAX_FRAMES, prefix="clip.")
    size = clip.get("size")
    sides = size if isinstance(size, list | tuple) else [size]
    if len(sides) not in (1, 2) or not all(_is_int(v) and 1 <= v <= MAX_SIDE for v in sides):
        raise ConfigError(
            f"clip.size: expected a positive integer or [H, W] of positive integers "
            f"<= {MAX_SIDE}, got {size!r}"
        )
    stride = clip.get("stride", 1)
    strides = stride if isinstance(stride, list | tuple) else [stride]
    if not strides or not all(_is_int(v) and v >= 1 for v in strides):
        raise ConfigError(f"clip.stride: expected integers >= 1, got {stride!r}")
    if clip.get("crop", "random") not in ("random", "center"):
        raise ConfigError(f"clip.crop: expected 'random' or 'center', got {clip.get('crop')!r}")
    filters = _group(cfg, "filters")
    lo = _number(filters, "min_area", 0.0, 1.0, default=0.0, prefix="filters.")
    hi = _number(filters, "max_area", 0.0, 1.0, default=1.0, prefix="filters.")
    if lo > hi:
        raise ConfigError(f"filters.min_area: expected at most filters.max_area ({hi}), got {lo}")
    _int(filters, "max_attempts", 1, default=8, prefix="filters.")
    enc = _group(cfg, "encode")
    if enc.get("codec", "h264") not in CODECS:
        raise ConfigError(f"encode.codec: expected one of {CODECS}, got {enc.get('codec')!r}")
    _int(enc, "crf", 0, 51, default=18, prefix="encode.")
    if enc.get("preset", "medium") not in X264_PRESETS:
        raise ConfigError(f"encode.preset: expected one of {X264_PRESETS}, got {enc['preset']!r}")
    ray = _group(cfg, "ray")
    if ray.get("num_cpus") is not None:
        _number(ray, "num_cpus", 1.0, None, prefix="ray.")
    _number(ray, "cpus_per_task", 0.0, None, default=1.0, prefix="ray.", open_low=True)
    _int(ray, "max_retries", 0, default=3, prefix="ray.")
    _number(cfg, "min_yield", 0.0, 1.0, default=0.5)
    check_recipes(cfg)
    if check_output:
        check_output_dir(cfg.get("output_dir"))


def check_recipes(cfg: Mapping[str, Any]) -> None:
    """Build the ``recipes`` nodes once and check that every task of the mix has one.

    Raises:
        ConfigError: a node cannot be built (naming its key, e.g.
            ``recipes.copy_paste.scale_range``), or a task the job samples has no recipe.
    """
    try:
        recipes = build_recipes(_group(cfg, "recipes"))
    except RecipeConfigError as e:
        raise ConfigError(str(e)) from e
    try:
        tasks = task_weights(cfg.get("mix") or {}, cfg.get("tasks"))
    except (TypeError, ValueError, AttributeError):
        return  # a bad mix/tasks is the planner's to report (one line naming mix/tasks)
    missing = [t for t in tasks if t not in recipes]
    if missing:
        raise ConfigError(
            f"recipes: no recipe builds task {missing[0]!r}, which the mix samples; bind one "
            f"(e.g. '+recipes.my_recipe={{_target_: my_pkg.MyRecipe, task: {missing[0]}}}') "
            f"or give it no weight (mix.{missing[0]}=0)"
        )


def check_output_dir(value: Any) -> Path:
    """``output_dir`` as an absolute path, refusing empty values and existing non-folders."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"output_dir: expected a folder path, got {value!r}")
    out = Path(value).expanduser().resolve()
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise ConfigError(f"output_dir: {p} exists and is not a folder")
    return out


def _group(cfg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    group = cfg.get(key) or {}
    if not isinstance(group, Mapping):
        raise ConfigError(f"{key}: expected a group of options, got {group!r}")
    return group


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(
    cfg: Mapping[str, Any],
    key: str,
    low: int | None,
    high: int | None = None,
    *,
    default: int | None = None,
    prefix: str = "",
) -> int:
    value = cfg.get(key, default)
    ok = _is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f" >= {low}" if low is not None else ""
        bounds = f" in {low}..{high}" if high is not None else bounds
        raise ConfigError(f"{prefix}{key}: expected an integer{bounds}, got {value!r}")
    return value


def _number(
    cfg: Mapping[str, Any],
    key: str,
    low: float,
    high: float | None,
    *,
    default: float | None = None,
    prefix: str = "",
    open_low: bool = False,
) -> float:
    value = cfg.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f"({low}, " if open_low else f"[{low}, "
        bounds += f"{high}]" if high is not None else "inf)"
        raise ConfigError(f"{prefix}{key}: expected a finite number in {bounds}, got {value!r}")
    return float(value)
