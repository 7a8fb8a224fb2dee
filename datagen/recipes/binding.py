"""Task -> recipe from the ``recipes`` config: one Hydra ``_target_`` node per recipe.

The nodes are instantiated with :func:`hydra.utils.instantiate` where they are used (in each shard
worker, from the job's plain JSON config, so nothing instantiated ever crosses a process
boundary), and once up front by :func:`datagen.job_config.check_job_config` so that a bad node is
refused before the job starts, with one line naming its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from contracts.tasks import TASKS
from datagen.recipes.base import Recipe, RecipeNeeds, RecipeOptionError


class RecipeConfigError(ValueError):
    """A ``recipes`` node cannot be built; the message starts with its config key."""


def build_recipes(cfg: Mapping[str, Any]) -> dict[str, Recipe]:
    """Instantiate the ``recipes`` config and key the recipes by the task each one builds.

    Args:
        cfg: the ``recipes`` config group: ``{key: {"_target_": "pkg.Class", "task": ...,
            **options}}``; a ``null`` node is switched off (``recipes.telea_fill=null``).

    Returns:
        ``{task: recipe}`` in the order of :data:`contracts.tasks.TASKS`.

    Raises:
        RecipeConfigError: a node is not a ``_target_`` node, its class cannot be imported or
            refuses its options, the result is not a recipe, or two nodes build the same task.
    """
    if not isinstance(cfg, Mapping):
        raise RecipeConfigError(f"recipes: expected a group of recipe nodes, got {cfg!r}")
    recipes: dict[str, Recipe] = {}
    key_of: dict[str, str] = {}
    for key, node in cfg.items():
        if node is None:
            continue
        recipe = build_recipe(f"recipes.{key}", node)
        if recipe.task in recipes:
            other = key_of[recipe.task]
            raise RecipeConfigError(
                f"recipes.{key}: task {recipe.task!r} is already built by recipes.{other} "
                f"(one recipe per task: switch one off, e.g. recipes.{key}=null)"
            )
        recipes[recipe.task], key_of[recipe.task] = recipe, key
    return {task: recipes[task] for task in TASKS if task in recipes}


def build_recipe(path: str, node: Any) -> Recipe:
    """Instantiate one recipe node (``path``: its config key, for the error messages).

    Raises:
        RecipeConfigError: see :func:`build_recipes`.
    """
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise RecipeConfigError(
            f"{path}: expected a node with a _target_ (the recipe class, e.g. "
            f"datagen.recipes.copy_paste.CopyPaste), got {node!r}"
        )
    target = node["_target_"]
    try:
        # Plain Python values in (lists, not ListConfig): recipes keep and hash their options.
        recipe = instantiate(node, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, RecipeOptionError):
            raise RecipeConfigError(f"{path}.{cause.option}: {_line(cause.detail)}") from e
        if str(e).startswith("Error locating target"):
            raise RecipeConfigError(
                f"{path}._target_: cannot import {target!r} ({_line(cause)})"
            ) from e
        if cause is None:  # e.g. a target that is not callable
            raise RecipeConfigError(f"{path}._target_: {_line(e)}") from e
        raise RecipeConfigError(f"{path}: {type(cause).__name__}: {_line(cause)}") from e
    return _checked(path, recipe)


def _checked(path: str, recipe: Any) -> Recipe:
    """``recipe`` when it has what the sample builder relies on (see :class:`Recipe`)."""
    kind = type(recipe).__name__
    task = getattr(recipe, "task", None)
    if task not in TASKS:
        raise RecipeConfigError(f"{path}.task: {kind} builds {task!r}, expected one of {TASKS}")
    if not isinstance(getattr(recipe, "needs", None), RecipeNeeds):
        raise RecipeConfigError(f"{path}: {kind} has no 'needs' (a datagen.recipes.RecipeNeeds)")
    if not isinstance(getattr(recipe, "name", None), str) or not callable(recipe):
        raise RecipeConfigError(f"{path}: {kind} is not a recipe (needs a 'name' and a __call__)")
    return recipe


def _line(value: object) -> str:
    """``str(value)`` on one line (Hydra's and importlib's messages span several)."""
    return " ".join(str(value).split())


def partner_tasks(cfg: Mapping[str, Any]) -> frozenset[str]:
    """The tasks whose recipe in the ``recipes`` config needs a partner video (the shard plan
    draws one for their samples)."""
    return frozenset(task for task, r in build_recipes(cfg).items() if r.needs.partner)
