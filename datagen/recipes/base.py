"""What every recipe receives, declares and returns, and the one-method recipe interface.

A recipe turns a source clip (and, for copy-and-paste, a partner clip) into one training pair
following docs/ARCHITECTURE.md §1: which video the SCE reads, which first frame G sees, the target
and the mask of the edited region. It also says which task its pairs train (``task``) and what the
sample builder must gather before calling it (``needs``), so the builder has no per-task code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from datagen.record import Clip, SkipSample


class RecipeOptionError(ValueError):
    """A recipe option has an unusable value.

    The message starts with the option's name (``"scale_range: expected ..."``), so that
    :func:`datagen.recipes.build_recipes` can name the full config key
    (``recipes.copy_paste.scale_range: expected ...``).

    Args:
        option: the constructor argument (= config key under the recipe's node).
        detail: what was expected and what was given.
    """

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(f"{option}: {detail}")
        self.option, self.detail = option, detail


@dataclass(frozen=True, kw_only=True)
class RecipeNeeds:
    """What a recipe needs the sample builder to gather before its call.

    Attributes:
        partner: a second clip, video B, passed as ``partner=``: another video of the dataset,
            or another object of the same video for one-video datasets (copy-and-paste).
        all_masks: the clip carries the masks of every instance, not only the picked one
            (colour fill may paint a second instance).
        instance: the instance the pair is about, whose first-frame area must lie inside
            ``filters.min_area..max_area``: ``"clip"`` (the picked instance of video A),
            ``"partner"`` (video B's instance) or ``None`` (no instance: border fill, which
            also builds from videos without objects).
        recheck_area: the recipe moves the instance (copy-and-paste's scale and offset), so the
            first frame of its output mask must still cover ``filters.min_area``.
        prompt: the prompt of every sample (colour fill: the paper's tracking prompt), or
            ``None`` for the category prompt of the picked instance.
    """

    partner: bool = False
    all_masks: bool = False
    instance: Literal["clip", "partner"] | None = "clip"
    recheck_area: bool = False
    prompt: str | None = None

    def __post_init__(self) -> None:
        if self.instance not in ("clip", "partner", None):
            raise ValueError(
                f"RecipeNeeds.instance: expected 'clip', 'partner' or None, got {self.instance!r}"
            )
        if self.instance == "partner" and not self.partner:
            raise ValueError("RecipeNeeds.instance='partner' needs partner=True")


@dataclass
class RecipeOutput:
    """One training pair before encoding (shapes as in ``contracts.schema.Sample``).

    Attributes:
        sce: ``(T, H, W, 3)`` uint8, the SCE input.
        first: ``(H, W, 3)`` uint8, G's first frame.
        target: ``(T, H, W, 3)`` uint8, the video to generate.
        mask: ``(T, H, W)`` uint8 in {0, 1}, the edited region.
        object_ids: ids of the instances the pair is about (removal: the pasted partner object,
            prefixed ``"<partner video>/"``).
        params: the recipe's random draws and settings, JSON-serialisable.
    """

    sce: np.ndarray
    first: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    object_ids: list[str]
    params: dict[str, Any]


class Recipe(Protocol):
    """A training-pair recipe: one call per sample, randomness only from ``rng``.

    Attributes:
        name: written to each sample's ``meta["recipe"]``.
        task: the task its pairs train (a name of ``contracts.tasks.TASKS``).
        needs: what the sample builder gathers before the call.
    """

    name: str
    task: str
    needs: RecipeNeeds

    def __call__(
        self, clip: Clip, rng: np.random.Generator, *, partner: Clip | None = None
    ) -> RecipeOutput: ...


def check_task(task: str, tasks: tuple[str, ...]) -> str:
    """``task`` when the recipe can build pairs for it (one of ``tasks``).

    Raises:
        RecipeOptionError: naming the option ``task``.
    """
    if task not in tasks:
        raise RecipeOptionError("task", f"expected one of {tasks}, got {task!r}")
    return task


def check_unit(option: str, value: float) -> float:
    """``value`` unchanged when it is a number in [0, 1] (a probability, an opacity).

    Raises:
        RecipeOptionError: naming ``option``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise RecipeOptionError(option, f"expected a number in [0, 1], got {value!r}")
    return value


def require_first_frame(clip: Clip, object_id: str) -> np.ndarray:
    """The object's ``(T, H, W)`` bool masks; :class:`SkipSample` when absent from frame 0."""
    if object_id not in clip.masks:
        raise SkipSample(f"object {object_id!r} not in video {clip.video_id!r}", "no_objects")
    if not clip.present_in_first(object_id):
        raise SkipSample(
            f"object {object_id!r} absent from the first frame of the clip", "object_absent"
        )
    return clip.masks[object_id]
