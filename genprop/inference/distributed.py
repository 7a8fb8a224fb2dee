"""Sequence-parallel propagation: every rank of a ``torchrun`` job runs the same propagation.

Each rank loads the model, splits the transformer's tokens with the others (Ulysses,
:mod:`genprop.scale.sequence_parallel`) and gets the same result; the caller writes it from rank 0
alone. The process group is the default one (``torchrun`` sets ``env://``): gloo on CPU, nccl on
CUDA.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from genprop.modeling.model import GenPropModel
from genprop.scale.sequence_parallel import SequenceParallel, enable_sequence_parallel


def check_sequence_parallel(size: int, name: str = "sequence_parallel") -> int:
    """Return ``size`` (ranks that split the tokens) or raise a one-line ValueError."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {size!r}")
    return size


def use_sequence_parallel(model: GenPropModel, size: int, name: str = "sequence_parallel") -> None:
    """Split ``model``'s tokens over the default process group of ``size`` ranks (1: nothing).

    Raises:
        ValueError: One line naming ``name``: no process group, ``size`` is not its world size,
            or ``size`` does not divide the backbone's attention heads.
    """
    check_sequence_parallel(size, name)
    if size == 1 or model.sequence_parallel.size == size:
        return  # nothing to split, or already split (a second propagation)
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            f"{name}: {size} needs a process group; run under torchrun --nproc-per-node {size}"
        )
    world = dist.get_world_size()
    if world != size:
        raise ValueError(f"{name}: {size} does not match the {world} processes of the job")
    try:
        enable_sequence_parallel(model, SequenceParallel.from_group(dist.group.WORLD))
    except ValueError as err:  # worded for training: "trainer.sequence_parallel: ..."
        raise ValueError(f"{name}:{str(err).partition(':')[2]}") from None


def init_from_env(device: str, size: int, flag: str = "--sequence-parallel") -> str:
    """Join the ``torchrun`` job of ``size`` processes (``env://``); return this rank's device.

    Args:
        device: ``"cpu"`` (gloo) or ``"cuda"`` (nccl, device ``LOCAL_RANK``).
        size: The ranks asked for.
        flag: The option named in errors.

    Raises:
        ValueError: One line when the process was not started by ``torchrun`` or the job's size
            differs from ``size``.
    """
    world = os.environ.get("WORLD_SIZE")
    if world is None:
        raise ValueError(
            f"{flag} {size}: no process group (WORLD_SIZE is unset); run under "
            f"torchrun --nproc-per-node {size}"
        )
    if int(world) != size:
        raise ValueError(f"{flag} {size}: the torchrun job has {world} processes")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device
