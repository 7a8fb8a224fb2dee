"""Sampling options and the sampling defaults an export carries (:class:`SamplingConfig`).

Dependency-free (no model, no torch): the config, the sampler, the CLIs and the training module
validate the same options with :func:`check_sampling_options`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

from genprop.preserve import PreserveConfig
from genprop.tasks import TASKS

MAX_STEPS = 10_000
MAX_GUIDANCE = 1_000.0


def check_sampling_options(*, steps: int, guidance: float, injection_weight: float) -> None:
    """Validate the sampling options (a NaN guidance would silently give a black video).

    Raises:
        ValueError: ``"<name>: expected ..., got ..."`` for the first bad option.
    """
    if isinstance(steps, bool) or not isinstance(steps, Integral) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps: expected an integer in [1, {MAX_STEPS}], got {steps!r}")
    for name, value, high in (
        ("guidance", guidance, MAX_GUIDANCE),
        ("injection_weight", injection_weight, 1.0),
    ):
        number = isinstance(value, Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and 0.0 <= value <= high):
            raise ValueError(f"{name}: expected a finite number in [0, {high:g}], got {value!r}")


def check_mask_threshold(value: float, name: str = "mask_threshold") -> None:
    """An MPD mask threshold is a probability strictly between 0 and 1.

    Raises:
        ValueError: ``"<name>: expected a number in (0, 1), got ..."``.
    """
    number = isinstance(value, Real) and not isinstance(value, bool)
    if not (number and 0.0 < value < 1.0):
        raise ValueError(f"{name}: expected a number in (0, 1), got {value!r}")


@dataclass
class SamplingConfig:
    """Sampling defaults an export carries: ``propagate`` and the CLIs use them unless told
    otherwise, so a user of the exported model gets what its evaluation measured."""

    steps: int = 20  # Euler steps per chunk
    guidance: float = 1.0  # classifier-free guidance (text + task); 1 = off
    # Per-task guidance overriding ``guidance`` (e.g. {"tracking": 12.0}), chosen on validation
    # cases (``python -m evaluation.guidance``).
    task_guidance: dict[str, float] = field(default_factory=dict)
    injection_weight: float = 1.0
    preserve: PreserveConfig = field(default_factory=PreserveConfig)
    # The MPD's probability above which a pixel is in the predicted edited region
    # (:attr:`genprop.propagate.PropagationResult.regions`), and per-task values overriding it,
    # chosen on validation cases (``python -m evaluation.mask_threshold``).
    mask_threshold: float = 0.5
    task_mask_threshold: dict[str, float] = field(default_factory=dict)

    def guidance_for(self, task: str) -> float:
        """The guidance scale of ``task``."""
        return float(self.task_guidance.get(task, self.guidance))

    def mask_threshold_for(self, task: str) -> float:
        """The MPD mask threshold of ``task``."""
        return float(self.task_mask_threshold.get(task, self.mask_threshold))

    def check(self, where: str = "sampling") -> None:
        """Raise ValueError naming the field when a value is out of range."""
        for name in ("task_guidance", "task_mask_threshold"):
            per_task = getattr(self, name)
            if not isinstance(per_task, dict):
                raise ValueError(f"{where}.{name}: expected an object, got {per_task!r}")
            unknown = [task for task in per_task if task not in TASKS]
            if unknown:
                raise ValueError(f"{where}.{name}: unknown task {unknown[0]!r} (one of {TASKS})")
        for task, g in self.task_guidance.items():
            try:
                check_sampling_options(steps=1, guidance=g, injection_weight=1.0)
            except ValueError as err:
                raise ValueError(f"{where}.task_guidance.{task}: {err}") from None
        try:
            check_sampling_options(
                steps=self.steps, guidance=self.guidance, injection_weight=self.injection_weight
            )
        except ValueError as err:
            raise ValueError(f"{where}.{err}") from None
        check_mask_threshold(self.mask_threshold, f"{where}.mask_threshold")
        for task, value in self.task_mask_threshold.items():
            check_mask_threshold(value, f"{where}.task_mask_threshold.{task}")
        self.preserve.check(f"{where}.preserve")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        """Rebuild from its ``asdict`` form (missing keys keep their defaults)."""
        data = dict(data)
        preserve = data.pop("preserve", {})
        if not isinstance(preserve, dict):
            raise ValueError(f"field 'sampling.preserve': expected an object, got {preserve!r}")
        return cls(preserve=PreserveConfig(**preserve), **data)
