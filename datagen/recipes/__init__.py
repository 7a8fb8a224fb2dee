"""Training-pair recipes (docs/ARCHITECTURE.md §1): one module per recipe, one call per sample.

Which recipe builds which task is configuration, not code: ``conf/datagen/recipes/default.yaml``
holds one Hydra ``_target_`` node per recipe, and :func:`build_recipes` instantiates them:
removal → :class:`CopyPaste`, edit → :class:`MaskFill` (mean), insertion → :class:`MaskFill`
(Telea), tracking → :class:`ColorFill`, outpainting → :class:`BorderFill`.

Writing a recipe: a class (or factory) whose instances have

- ``name``: written to ``meta["recipe"]`` of each sample;
- ``task``: the task its pairs train, usually a keyword argument checked against the tasks the
  class can serve (:func:`check_task`), so the YAML node states it;
- ``needs``: a :class:`RecipeNeeds` telling the sample builder what to gather before the call
  (a partner clip of video B, the masks of every instance, which instance the area filters apply
  to, a fixed prompt);
- ``__call__(clip, rng, *, partner=None) -> RecipeOutput``, drawing randomness only from ``rng``.

Options with bad values raise :class:`RecipeOptionError` naming the option, which the job turns
into a one-line error naming the config key (``recipes.copy_paste.scale_range: expected ...``).

Swapping a recipe is a YAML change: switch the node off and add yours, on the command line
(``recipes.telea_fill=null '+recipes.my_fill={_target_: my_pkg.MyFill, task: insertion}'``) or in
a file ``conf/datagen/recipes/NAME.yaml`` that starts with ``defaults: [default, _self_]``, picked
with ``recipes=NAME``. The class must import in the driver (which builds every node once to check
it) and in the shard workers (which instantiate the nodes from the job's plain JSON config, so
recipe objects never need to pickle).
"""

from __future__ import annotations

from datagen.recipes.base import (
    Recipe,
    RecipeNeeds,
    RecipeOptionError,
    RecipeOutput,
    check_task,
    check_unit,
)
from datagen.recipes.binding import RecipeConfigError, build_recipe, build_recipes, partner_tasks
from datagen.recipes.border_fill import BorderFill
from datagen.recipes.color_fill import ColorFill
from datagen.recipes.copy_paste import CopyPaste
from datagen.recipes.mask_fill import MaskFill
from datagen.record import SkipSample

__all__ = [
    "BorderFill",
    "ColorFill",
    "CopyPaste",
    "MaskFill",
    "Recipe",
    "RecipeConfigError",
    "RecipeNeeds",
    "RecipeOptionError",
    "RecipeOutput",
    "SkipSample",
    "build_recipe",
    "build_recipes",
    "check_task",
    "check_unit",
    "partner_tasks",
]
