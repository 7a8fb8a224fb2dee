"""The contracts written on both sides of the package walls agree (docs/ARCHITECTURE.md §4).

The layering forbids ``genprop`` and ``datagen`` from importing each other, so the task vocabulary
exists once in each; ``training`` may read both, and pins them equal here.
"""

from __future__ import annotations

from datagen import schema
from genprop import tasks


def test_task_vocabulary_is_the_same_on_both_sides() -> None:
    assert tasks.TASKS == schema.TASKS
    assert len(schema.TASKS) == tasks.NULL_TASK  # the dropped task of classifier-free guidance


def test_toy_benchmark_writes_every_shard_task_and_the_tracking_prompt() -> None:
    from datagen import prompts
    from datagen.toyworld import benchmark

    assert sorted(benchmark.TASKS) == sorted(schema.TASKS)
    assert prompts.TRACKING_PROMPT == tasks.TRACKING_PROMPT
