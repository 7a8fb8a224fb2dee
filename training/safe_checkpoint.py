"""Checkpoints that load with ``torch.load(weights_only=True)``, and refusing any other.

A ``.ckpt`` in a run folder is untrusted input: unpickling arbitrary objects runs code. Every
checkpoint ``genprop-train`` writes therefore holds tensors and plain data only (dicts, lists,
tuples, strings, numbers, booleans, ``None``): :func:`plain_data` converts the hyper-parameters
(which Hydra hands over as OmegaConf containers) and rejects anything else, and the model's
:class:`~genprop.configs.GenPropConfig` is stored as a JSON string. A resume loads with
``weights_only=True`` (:func:`check_weights_only` first, for a one-line refusal before anything
is built, then Lightning's own ``trainer.fit(..., weights_only=True)``).
"""

from __future__ import annotations

import enum
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch


class UnsafeCheckpointError(ValueError):
    """A checkpoint that does not load with ``weights_only=True`` (refused, never unpickled)."""


_SCALARS = (str, int, float, bool, type(None))


def plain_data(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` as plain data ``torch.load(weights_only=True)`` accepts.

    Mappings (OmegaConf ``DictConfig`` included) become dicts, sequences other than strings
    (``ListConfig`` included) lists, tuples stay tuples, numpy scalars become Python numbers,
    paths strings and enums their values; tensors are kept.

    Raises:
        TypeError: naming the key path (``where``) of a value of another type.
    """
    if isinstance(obj, (torch.Tensor, *_SCALARS)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return plain_data(obj.value, where)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where}: key {key!r} is not a string or an integer")
            out[key] = plain_data(value, f"{where}.{key}")
        return out
    if isinstance(obj, tuple):
        return tuple(plain_data(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, Sequence):
        return [plain_data(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(
        f"{where}: a {type(obj).__name__} cannot be stored in a weights-only checkpoint; "
        "store plain data (dicts, lists, strings, numbers) or tensors"
    )


def _reason(err: BaseException) -> str:
    """The informative line of torch's (multi-line) weights-only refusal."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line
    return lines[0] if lines else type(err).__name__


def check_weights_only(path: str | Path) -> None:
    """Refuse ``path`` unless it loads with ``weights_only=True`` (memory-mapped, nothing run).

    Raises:
        UnsafeCheckpointError: naming the file, when it holds anything but tensors and plain
            data, or is not a checkpoint file at all.
    """
    path = Path(path)
    if path.is_dir():  # a sharded (distributed) checkpoint: loaded by torch.distributed
        return
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise UnsafeCheckpointError(
            f"{path}: refusing to resume from this checkpoint: it does not load as plain "
            f"tensors and data (torch.load weights_only=True: {_reason(err)}); loading it "
            "could run code. Use a checkpoint written by genprop-train."
        ) from None
