"""NaN and inf in training: steps skipped and counted, and exports of non-finite weights refused.

:class:`NonFiniteSteps` is the bookkeeping of :class:`training.module.GenPropLitModule`: a step
whose loss or gradients hold NaN or inf makes no update (its gradients are dropped before the
optimizer and the EMA see them) and is counted; ``model.max_consecutive_nonfinite`` of them in a
row stop the run with :class:`NonFiniteError`. :func:`check_exportable` keeps a non-finite model
from being written as an export (``callbacks.export``, ``python -m training.export``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Training diverged (too many non-finite steps in a row), or weights to export hold NaN/inf."""


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def all_finite(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """A 0-d bool tensor: every floating tensor of ``tensors`` is free of NaN and inf (a DTensor:
    this rank's part). Stays on the tensors' device (no host sync)."""
    flags = [torch.isfinite(_local(t)).all() for t in tensors if t.is_floating_point()]
    if not flags:
        return torch.tensor(True)
    return torch.stack([f.to(flags[0].device) for f in flags]).all()


def first_nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating tensor holding NaN or inf (a DTensor: in this rank's part),
    or None."""
    for name, t in named:
        local = _local(t)
        if local.is_floating_point() and not bool(torch.isfinite(local).all()):
            return name
    return None


def _agree(flag: bool, device: torch.device) -> bool:
    """``flag`` OR-ed over all ranks (as is, without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def exported_tensors(
    net: nn.Module, ema_shadow: dict[str, torch.Tensor]
) -> Iterator[tuple[str, Any]]:
    """What an export of ``net`` with its EMA swapped in holds: the EMA of each trainable weight,
    the other weights and buffers as they are."""
    yield from ema_shadow.items()
    for name, t in net.state_dict().items():
        if name not in ema_shadow and isinstance(t, torch.Tensor):
            yield name, t


def check_exportable(
    net: nn.Module, ema_shadow: dict[str, torch.Tensor], where: str, *, collective: bool
) -> None:
    """Refuse to export a model that holds NaN or inf.

    Args:
        net: the model.
        ema_shadow: its EMA weights (by parameter name), swapped in for the export.
        where: the export folder (for the message).
        collective: the model is sharded: every rank checks its part and all agree (call on
            every rank).

    Raises:
        NonFiniteError: naming ``where`` and the first non-finite tensor.
    """
    bad = first_nonfinite(exported_tensors(net, ema_shadow))
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    if collective and _agree(bad is not None, device) and bad is None:
        bad = "(on another rank)"
    if bad is not None:
        raise NonFiniteError(
            f"{where}: refusing to export: weight {bad!r} holds NaN or inf (the run diverged; "
            "export an earlier checkpoint with python -m training.export)"
        )


class NonFiniteSteps:
    """Counts steps whose loss or gradients are not finite; see the module docstring.

    Args:
        max_consecutive: stop after this many non-finite steps in a row.
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        if type(max_consecutive) is not int or max_consecutive < 1:
            raise ValueError(
                "model.max_consecutive_nonfinite: expected an integer >= 1 (steps), got "
                f"{max_consecutive!r}"
            )
        self.max_consecutive = max_consecutive
        self.total = 0  # steps skipped in the run (checkpointed)
        self.consecutive = 0
        self.loss_finite: torch.Tensor | None = None  # of the micro-batches since the last step

    def note_loss(self, loss: torch.Tensor) -> None:
        """Record whether a micro-batch's loss is finite (no host sync)."""
        finite = torch.isfinite(loss.detach()).all()
        self.loss_finite = finite if self.loss_finite is None else self.loss_finite & finite

    def step_is_finite(self, grads: list[torch.Tensor], device: torch.device) -> bool:
        """Whether the step about to be taken is finite: its losses and ``grads``, agreed on by
        all ranks (one scalar all-reduce on ``device`` when there are several). Resets the loss
        record."""
        finite = all_finite(grads).to(device)
        if self.loss_finite is not None:
            finite = finite & self.loss_finite.to(device)
        self.loss_finite = None
        return not _agree(not bool(finite), device)

    def skipped(self, step: int) -> None:
        """Count a skipped step.

        Raises:
            NonFiniteError: at ``max_consecutive`` skipped steps in a row.
        """
        self.total += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteError(
                f"step {step}: loss or gradients were NaN or inf for {self.consecutive} steps in "
                f"a row (limit model.max_consecutive_nonfinite={self.max_consecutive}); the run "
                "diverged: lower model.optimizer.lr or check the data"
            )
        log.warning(
            "step %d: loss or gradients are NaN or inf; step skipped (%d in a row, %d in the run)",
            step,
            self.consecutive,
            self.total,
        )

    def stepped(self) -> None:
        """A finite step was taken."""
        self.consecutive = 0

    def state_dict(self) -> dict[str, int]:
        """Checkpointed counters."""
        return {"total": self.total, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore :meth:`state_dict`."""
        self.total = int(state.get("total", 0))
        self.consecutive = int(state.get("consecutive", 0))
