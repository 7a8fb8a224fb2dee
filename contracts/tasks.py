"""The GenProp task vocabulary: shard metadata, the model's task embedding rows and the benchmark
cases all name tasks from :data:`TASKS` and index them in its order."""

from __future__ import annotations

TASKS: tuple[str, ...] = ("removal", "edit", "insertion", "tracking", "outpainting")

# Index of the extra "no task" embedding row used for classifier-free guidance (task dropout).
NULL_TASK: int = len(TASKS)

# Prompt the paper uses for the tracking (colour fill) task.
TRACKING_PROMPT = "track colored regions"


def task_index(task: str | int) -> int:
    """Return the index of ``task`` in :data:`TASKS`.

    Args:
        task: A task name (e.g. ``"removal"``) or an index.

    Raises:
        ValueError: If the name or index is unknown.
    """
    if isinstance(task, bool):
        raise ValueError(f"task: expected a name in {TASKS} or an index, got {task!r}")
    if isinstance(task, int):
        if not 0 <= task < len(TASKS):
            raise ValueError(f"task: index {task} out of range 0..{len(TASKS) - 1}")
        return task
    if task not in TASKS:
        raise ValueError(f"task: unknown task {task!r}, expected one of {TASKS}")
    return TASKS.index(task)
