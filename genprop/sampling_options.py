"""Sampling options and the sampling defaults an export carries (:class:`SamplingConfig`).

Dependency-free (no model, no torch): the config, the sampler, the CLIs and the training module
validate the same options with :func:`check_sampling_options`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

from contracts.tasks import TASKS

PRESERVE_MODES = ("off", "latent", "pixel")
PRESERVE_SOURCES = ("mpd", "change", "union")
MAX_LATENT_THRESHOLD = 100.0
# "euler": GenProp's own Euler sampler (genprop.flow's grid); the others are diffusers' scheduler
# classes as Wan's pipelines configure them (genprop.inference.schedulers).
SCHEDULERS = ("euler", "unipc", "flow_euler")


@dataclass
class PreserveConfig:
    """How the unedited region is kept (see :mod:`genprop.inference.preserve`)."""

    mode: str = "off"  # "off" | "latent" | "pixel"
    dilate: int = 1  # max-filter radius, in cells of the blended grid
    blur: float = 1.0  # Gaussian sigma, in cells of the blended grid (0 = none)
    source: str = "mpd"  # "mpd" | "change" | "union": where the edit is
    threshold: float = 0.1  # "change": smallest difference counted as an edit (see above)
    opening: int = 1  # "change": opening radius in cells of the compared grid (0 = none)
    # "change" / "union": keep only changes linked, frame by frame, to the first frame's edit,
    # across gaps of at most this many cells (0 = keep every change; see above).
    link_radius: int = 0
    # "change" / "union": tasks whose edit region is frame 0's in every frame (see above).
    fixed_region_tasks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Any sequence of names (a tuple, a Hydra list) is stored as a plain list.
        if isinstance(self.fixed_region_tasks, Sequence) and not isinstance(
            self.fixed_region_tasks, str
        ):
            self.fixed_region_tasks = list(self.fixed_region_tasks)

    def check(self, where: str = "preserve") -> None:
        """Raise ValueError naming the field when a value is out of range."""
        if self.mode not in PRESERVE_MODES:
            raise ValueError(f"{where}.mode: expected one of {PRESERVE_MODES}, got {self.mode!r}")
        if isinstance(self.dilate, bool) or not isinstance(self.dilate, int):
            raise ValueError(f"{where}.dilate: expected an integer, got {self.dilate!r}")
        if not 0 <= self.dilate <= 64:
            raise ValueError(f"{where}.dilate: expected 0..64 cells, got {self.dilate}")
        blur = self.blur
        if isinstance(blur, bool) or not isinstance(blur, int | float) or not math.isfinite(blur):
            raise ValueError(f"{where}.blur: expected a finite number, got {blur!r}")
        if not 0.0 <= blur <= 32.0:
            raise ValueError(f"{where}.blur: expected 0..32 cells, got {blur}")
        if self.source not in PRESERVE_SOURCES:
            raise ValueError(
                f"{where}.source: expected one of {PRESERVE_SOURCES}, got {self.source!r}"
            )
        thr = self.threshold
        if isinstance(thr, bool) or not isinstance(thr, int | float) or not math.isfinite(thr):
            raise ValueError(f"{where}.threshold: expected a finite number, got {thr!r}")
        high = 1.0 if self.mode == "pixel" else MAX_LATENT_THRESHOLD
        if not 0.0 < thr < high:
            unit = "a pixel difference" if self.mode == "pixel" else "a latent difference"
            raise ValueError(f"{where}.threshold: expected {unit} in (0, {high:g}), got {thr}")
        if isinstance(self.opening, bool) or not isinstance(self.opening, int):
            raise ValueError(f"{where}.opening: expected an integer, got {self.opening!r}")
        if not 0 <= self.opening <= 16:
            raise ValueError(f"{where}.opening: expected 0..16 cells, got {self.opening}")
        link = self.link_radius
        if isinstance(link, bool) or not isinstance(link, int) or not 0 <= link <= 64:
            raise ValueError(f"{where}.link_radius: expected an integer 0..64 cells, got {link!r}")
        if link and self.source == "mpd":
            raise ValueError(
                f"{where}.link_radius: links changes to the first frame's edit, so it needs "
                f"source 'change' or 'union', got source 'mpd'"
            )
        fixed = self.fixed_region_tasks
        if not isinstance(fixed, list) or any(t not in TASKS for t in fixed):
            raise ValueError(
                f"{where}.fixed_region_tasks: expected a list of task names from {TASKS}, "
                f"got {fixed!r}"
            )
        if fixed and self.source == "mpd":
            raise ValueError(
                f"{where}.fixed_region_tasks: holds the first frame's change, so it needs "
                f"source 'change' or 'union', got source 'mpd'"
            )


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


def check_scheduler(name: str, where: str = "scheduler") -> None:
    """A scheduler is one of :data:`SCHEDULERS`.

    Raises:
        ValueError: ``"<where>: expected one of (...), got ..."``.
    """
    if not isinstance(name, str) or name not in SCHEDULERS:
        raise ValueError(f"{where}: expected one of {SCHEDULERS}, got {name!r}")


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

    steps: int = 20  # sampling steps per chunk
    scheduler: str = "euler"  # one of SCHEDULERS; a Wan export carries its folder's ("unipc")
    guidance: float = 1.0  # classifier-free guidance (text + task); 1 = off
    # Per-task guidance overriding ``guidance`` (e.g. {"tracking": 12.0}), chosen on validation
    # cases (``python -m evaluation.guidance``).
    task_guidance: dict[str, float] = field(default_factory=dict)
    injection_weight: float = 1.0
    preserve: PreserveConfig = field(default_factory=PreserveConfig)
    # The MPD's probability above which a pixel is in the predicted edited region
    # (:attr:`genprop.inference.propagate.PropagationResult.regions`), and per-task values
    # overriding it,
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
        check_scheduler(self.scheduler, f"{where}.scheduler")
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
