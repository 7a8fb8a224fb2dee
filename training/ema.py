"""Exponential moving average of the trainable weights (used for validation and export).

Works on plain and on sharded (FSDP2 DTensor) parameters alike: the shadow of a sharded parameter
is a DTensor with the same placements, so each rank averages only its own shard (no
communication) and ``torch.distributed.checkpoint`` saves and reshards it like the weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.distributed.tensor import DTensor


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (shares its storage); plain tensors as they are."""
    return t.to_local() if isinstance(t, DTensor) else t


class ParameterEMA:
    """EMA shadow copies of a model's trainable parameters, stored by parameter name.

    Only parameters with ``requires_grad`` are tracked: with a frozen backbone the EMA costs the
    size of the SCE + MPD, not of the whole model. The shadow lives on the parameters' device and
    in fp32; a sharded parameter's shadow is sharded the same way (built after sharding).
    ``state_dict``/``load_state_dict`` make it part of the Lightning checkpoint.

    Args:
        model: the module whose trainable parameters are averaged.
        decay: EMA decay per update; the effective decay is warmed up as
            ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates so early weights fade quickly.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"model.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone()
            for name, p in model.named_parameters()
            if p.requires_grad
        }

    def current_decay(self) -> float:
        """Decay used by the next :meth:`update`."""
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move each shadow toward the current weight: ``s <- d * s + (1 - d) * w``."""
        d = self.current_decay()
        params = dict(model.named_parameters())
        shadows, weights = [], []
        for name, s in self.shadow.items():
            p = params[name].detach()
            if s.device != p.device:
                self.shadow[name] = s = s.to(p.device)
            shadows.append(_local(s))
            weights.append(_local(p).float())
        if shadows:
            torch._foreach_lerp_(shadows, weights, 1.0 - d)
        self.num_updates += 1

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model`` (restored on exit, even on error)."""
        params = {n: _local(p.detach()) for n, p in model.named_parameters()}
        backup = {n: params[n].clone() for n in self.shadow}
        try:
            with torch.no_grad():
                for n, s in self.shadow.items():
                    params[n].copy_(_local(s).to(device=params[n].device, dtype=params[n].dtype))
            yield model
        finally:
            with torch.no_grad():
                for n, b in backup.items():
                    params[n].copy_(b)

    def state_dict(self) -> dict[str, object]:
        """Tensors and counters only (safe for ``torch.load(weights_only=True)``)."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore from :meth:`state_dict`; the tracked parameter names must match."""
        shadow = state["shadow"]
        assert isinstance(shadow, dict)
        if set(shadow) != set(self.shadow):
            missing = sorted(set(self.shadow) - set(shadow))[:5]
            extra = sorted(set(shadow) - set(self.shadow))[:5]
            raise ValueError(
                f"EMA state: tracked parameters differ (missing {missing}, unexpected {extra}); "
                "was the checkpoint written with another stage or train_backbone setting?"
            )
        self.decay = float(state["decay"])  # type: ignore[arg-type]
        self.num_updates = int(state["num_updates"])  # type: ignore[arg-type]
        for n, t in shadow.items():
            if isinstance(t, DTensor) != isinstance(self.shadow[n], DTensor):
                raise ValueError(
                    f"EMA state: {n} is {'' if isinstance(t, DTensor) else 'not '}sharded but the "
                    "model's is the opposite; load a sharded checkpoint with trainer=fsdp"
                )
        self.shadow = {
            n: t.detach().float().to(self.shadow[n].device).clone() for n, t in shadow.items()
        }
