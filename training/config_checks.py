"""Checks of a composed ``genprop-train`` config before anything is built.

:func:`check_run_config` runs once at the start of :func:`training.train.train` (and
``genprop-plan`` runs :func:`check_options`): every numeric option has the type and range it
needs, and the folders the run writes (checkpoints, exports) can be written. A bad value raises
:class:`SetupError` naming the option and what was expected; ``genprop-train`` prints it as one
line and exits 2. The same class carries the other "this run cannot start as configured" errors
found later: clips whose geometry the model does not take, a resumed checkpoint of another model.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class SetupError(ValueError):
    """A run that cannot start as configured (an option, a folder, data or checkpoint that does
    not fit); the message is one line naming the option, file or tensor."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= low


def _finite_in(low: float, high: float, *, open_low: bool = False, open_high: bool = False):
    def ok(v: Any) -> bool:
        if not _is_number(v) or not math.isfinite(v):
            return False
        above = v > low if open_low else v >= low
        below = v < high if open_high else v <= high
        return above and below

    return ok


def _fraction_or_count(v: Any) -> bool:
    """Lightning's "batches" options: an integer count >= 0 or a fraction in [0, 1]."""
    return (_is_int(v) and v >= 0) or (_is_number(v) and math.isfinite(v) and 0.0 <= v <= 1.0)


def _interval(v: Any) -> bool:
    """``val_check_interval``: a batch count >= 1 or a fraction of an epoch in (0, 1]."""
    return (_is_int(v) and v >= 1) or (_is_number(v) and math.isfinite(v) and 0.0 < v <= 1.0)


def _betas(v: Any) -> bool:
    values = list(v) if isinstance(v, list | tuple) or OmegaConf.is_list(v) else None
    return (
        values is not None
        and len(values) == 2
        and all(_finite_in(0.0, 1.0, open_high=True)(b) for b in values)
    )


_INF = math.inf
# (option, may be null, predicate, what is expected). Options absent from a config are skipped
# (a scheduler-less optim group, a callbacks group without periodic checkpoints).
_OPTIONS: tuple[tuple[str, bool, Callable[[Any], bool], str], ...] = (
    ("data.batch_size", False, _int_at_least(1), "an integer >= 1 (samples per batch per rank)"),
    ("data.num_workers", False, _int_at_least(0), "an integer >= 0 (loader processes per rank)"),
    ("data.epoch_batches", True, _int_at_least(1), "an integer >= 1 (batches per epoch) or null"),
    ("data.shuffle_buffer", False, _int_at_least(0), "an integer >= 0 (samples)"),
    (
        "data.prefetch_factor",
        True,
        _int_at_least(1),
        "an integer >= 1 (batches per worker) or null",
    ),
    ("data.max_consecutive_failures", False, _int_at_least(1), "an integer >= 1"),
    ("data.num_frames", True, _int_at_least(1), "an integer >= 1 (frames kept) or null"),
    ("model.optimizer.lr", False, _finite_in(0.0, _INF, open_low=True), "a finite number > 0"),
    ("model.optimizer.weight_decay", False, _finite_in(0.0, _INF), "a finite number >= 0"),
    ("model.optimizer.betas", False, _betas, "two numbers in [0, 1)"),
    ("model.scheduler.warmup_steps", False, _int_at_least(0), "an integer >= 0 (steps)"),
    ("model.scheduler.min_lr_ratio", False, _finite_in(0.0, 1.0), "a number in [0, 1]"),
    ("model.ema_decay", False, _finite_in(0.0, 1.0, open_high=True), "a number in [0, 1)"),
    ("model.max_consecutive_nonfinite", False, _int_at_least(1), "an integer >= 1 (steps)"),
    # The LR schedule decays over trainer.max_steps, and the stream is endless: there is no
    # "unlimited" (-1) run length in this config.
    ("trainer.max_steps", False, _int_at_least(1), "an integer >= 1 (optimizer steps to train)"),
    ("trainer.accumulate_grad_batches", False, _int_at_least(1), "an integer >= 1"),
    ("trainer.gradient_clip_val", True, _finite_in(0.0, _INF), "a finite number >= 0 or null"),
    ("trainer.log_every_n_steps", False, _int_at_least(1), "an integer >= 1 (steps)"),
    ("trainer.val_check_interval", True, _interval, "an integer >= 1 or a fraction in (0, 1]"),
    (
        "trainer.limit_val_batches",
        True,
        _fraction_or_count,
        "an integer >= 0 or a fraction in [0, 1]",
    ),
    ("trainer.num_nodes", False, _int_at_least(1), "an integer >= 1"),
    (
        "callbacks.periodic_checkpoint.every_n_train_steps",
        True,
        _int_at_least(1),
        "an integer >= 1 (steps) or null",
    ),
    ("cluster.max_requeues", False, _int_at_least(0), "an integer >= 0"),
    (
        "cluster.gpu_memory_gb",
        False,
        _finite_in(0.0, _INF, open_low=True),
        "a finite number > 0 (GB)",
    ),
)
_MISSING = object()


def check_options(cfg: DictConfig, keys: tuple[str, ...] | None = None) -> None:
    """Check the numeric options of ``cfg`` (all of :data:`_OPTIONS`, or only ``keys``).

    Raises:
        SetupError: naming the first option whose value is out of range or of the wrong type.
    """
    for key, nullable, ok, expected in _OPTIONS:
        if keys is not None and key not in keys:
            continue
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING or (value is None and nullable):
            continue
        if value is None or not ok(value):
            shown = list(value) if OmegaConf.is_list(value) else value
            raise SetupError(f"{key}: expected {expected}, got {shown!r}")


def check_writable(folder: Path, option: str) -> None:
    """Check that ``folder`` can be written (created, if it does not exist yet), by writing a
    probe file into it or into its nearest existing parent: permissions alone do not say it (a
    read-only mount, root squashing, ACLs).

    Raises:
        SetupError: naming ``option`` and the folder.
    """
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise SetupError(f"{option}: cannot create {folder}: {probe} is not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".genprop-write-check-", dir=probe)
    except OSError as err:
        raise SetupError(
            f"{option}: {folder} is not writable ({err.strerror or err}); the run writes its "
            "checkpoints and exports there"
        ) from None
    os.close(fd)
    os.unlink(name)


def _written_folders(cfg: DictConfig) -> list[tuple[str, Path]]:
    """(option, folder) of every folder a run writes into."""
    out = []
    run_dir = OmegaConf.select(cfg, "paths.run_dir", default=None)
    if run_dir:
        out.append(("paths.run_dir", Path(str(run_dir))))
    for name, node in (cfg.get("callbacks") or {}).items():
        dirpath = node.get("dirpath") if isinstance(node, DictConfig) else None
        if dirpath:
            out.append((f"callbacks.{name}.dirpath", Path(str(dirpath))))
    return out


def check_run_config(cfg: DictConfig) -> None:
    """Everything about ``cfg`` that can be checked before the data and model are built.

    Raises:
        SetupError: the first problem, in one line naming the option.
    """
    check_options(cfg)
    for option, folder in _written_folders(cfg):
        check_writable(folder.expanduser(), option)
