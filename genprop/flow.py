"""Rectified-flow noise process (the convention Wan and SD3 use).

``x_t = (1 - t)·x0 + t·ε`` with t in [0, 1] (t = 1 is pure noise); the network predicts the velocity
``v = ε - x0`` so that ``dx_t/dt = v``. Sampling integrates from t = 1 down to t = 0.
"""

from __future__ import annotations

import torch


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Interpolate (B, ...) clean latents and noise at times t (B,)."""
    tt = t.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - tt) * x0 + tt * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target ``ε - x0``."""
    return noise - x0


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 timestep shift: ``s·t / (1 + (s - 1)·t)``; ``shift > 1`` spends more time near noise."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def unshift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Inverse of :func:`shift_time`: ``t / (s - (s - 1)·t)``."""
    if shift == 1.0:
        return t
    return t / (shift - (shift - 1) * t)


def training_time_cdf(t: float, shift: float = 1.0) -> float:
    """P(T <= t) for the training times of :func:`sample_training_time` (t in [0, 1])."""
    if t <= 0.0:
        return 0.0
    if t >= 1.0:
        return 1.0
    u = torch.logit(unshift_time(torch.tensor(t, dtype=torch.float64), shift))
    return float(torch.special.ndtr(u))


def sample_training_time(
    batch: int,
    *,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    t_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Training times (B,): logit-normal(0, 1) (SD3), then shifted.

    Args:
        t_range: Restrict to ``[lo, hi]`` (the same distribution conditioned on that range, by
            inverse CDF; a mixture-of-experts backbone trains one expert's range per step).
    """
    if t_range is None:
        u = torch.randn(batch, generator=generator, device="cpu").to(device)
        return shift_time(torch.sigmoid(u), shift)
    lo, hi = (training_time_cdf(x, shift) for x in t_range)
    p = lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)
    eps = torch.finfo(torch.float64).eps
    u = torch.special.ndtri(p.clamp(eps, 1 - eps))
    t = shift_time(torch.sigmoid(u), shift).clamp(*t_range)
    return t.float().to(device)


def sampling_times(steps: int, *, shift: float = 1.0) -> torch.Tensor:
    """Euler grid (steps + 1,) from 1 down to 0, shifted."""
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1), shift)
