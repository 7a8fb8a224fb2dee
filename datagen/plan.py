"""The deterministic shard plan: every sample's key, task, video and partner, fixed up front.

The plan depends only on the sorted video ids, the task mix, ``num_samples``,
``samples_per_shard`` and ``seed`` — never on how many workers run — and each sample draws all
its randomness from :func:`sample_rng` ``(seed, shard, index, attempt)``. That is what makes a job
reproducible and resumable shard by shard.

- Tasks: exact quotas from the mix (largest remainder), shuffled.
- Videos: every video once per epoch, in a fresh seeded order each epoch.
- Partner (video B of a recipe that needs one: copy-and-paste removal): another video drawn
  uniformly; when the dataset has a single video, the partner is that same video and the sample
  builder pastes a *different object* of it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from contracts.tasks import TASKS


@dataclass(frozen=True)
class SamplePlan:
    """One planned sample (``key`` = ``"<shard name>_<index:06d>"``)."""

    key: str
    shard: int
    index: int
    task: str
    video_id: str
    partner_id: str | None


@dataclass(frozen=True)
class ShardPlan:
    """One output shard: ``name`` (``"shard-000003"``) and its samples, in order."""

    index: int
    name: str
    samples: tuple[SamplePlan, ...]


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def sample_rng(seed: int, shard: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator of one sample attempt; independent of worker count and order."""
    return np.random.default_rng([int(seed), int(shard), int(index), int(attempt)])


def task_weights(mix: Mapping[str, float], tasks: Sequence[str] | None = None) -> dict[str, float]:
    """Normalised task probabilities from ``mix``, restricted to ``tasks`` when given.

    When every restricted weight is zero (e.g. ``tasks=[outpainting]`` with the paper mix), the
    listed tasks are used uniformly: naming a task asks for it. Naming zero-weight tasks next to
    positive ones is ambiguous and an error.
    """
    unknown = [t for t in [*mix, *(tasks or [])] if t not in TASKS]
    if unknown:
        raise ValueError(f"mix/tasks name unknown tasks {unknown}; known: {TASKS}")
    if any(float(w) < 0 for w in mix.values()):
        raise ValueError(f"mix weights must be >= 0, got {dict(mix)}")
    chosen = list(tasks) if tasks else [t for t in TASKS if float(mix.get(t, 0)) > 0]
    weights = {t: float(mix.get(t, 0.0)) for t in chosen}
    total = sum(weights.values())
    if total <= 0:
        if not tasks:
            raise ValueError(f"mix has no positive weight: {dict(mix)}")
        return {t: 1.0 / len(chosen) for t in chosen}
    zero = [t for t, w in weights.items() if w == 0]
    if tasks and zero:
        raise ValueError(
            f"tasks={list(tasks)} names {zero} with weight 0 in the mix; give them a weight "
            f"(e.g. mix.{zero[0]}=0.1) or leave them out"
        )
    return {t: w / total for t, w in weights.items() if w > 0}


def task_quotas(weights: Mapping[str, float], n: int) -> dict[str, int]:
    """Exact per-task counts summing to ``n`` (largest-remainder rounding, ties in TASKS order)."""
    raw = {t: weights[t] * n for t in weights}
    counts = {t: int(np.floor(v)) for t, v in raw.items()}
    order = sorted(weights, key=lambda t: (-(raw[t] - counts[t]), TASKS.index(t)))
    for t in order[: n - sum(counts.values())]:
        counts[t] += 1
    return counts


def make_plan(
    video_ids: Sequence[str],
    *,
    num_samples: int,
    samples_per_shard: int,
    mix: Mapping[str, float],
    tasks: Sequence[str] | None = None,
    seed: int = 0,
    partner_tasks: Collection[str] = frozenset(),
) -> list[ShardPlan]:
    """Plan a job.

    Args:
        video_ids: the dataset's videos (sorted here, so reader order does not matter).
        num_samples: total samples.
        samples_per_shard: samples per shard (the last shard may hold fewer).
        mix: task -> weight.
        tasks: optional restriction of the mix.
        seed: job seed.
        partner_tasks: the tasks whose recipe needs a partner video (``RecipeNeeds.partner``;
            copy-and-paste removal's video B); the other samples get none.
    """
    if num_samples < 1 or samples_per_shard < 1:
        raise ValueError(
            f"num_samples and samples_per_shard must be >= 1, got {num_samples}, "
            f"{samples_per_shard}"
        )
    videos = sorted(set(video_ids))
    if not videos:
        raise ValueError("the dataset lists no videos")
    rng = np.random.default_rng([int(seed), 0x9E3779B9])
    quotas = task_quotas(task_weights(mix, tasks), num_samples)
    task_list = [t for t in TASKS if t in quotas for _ in range(quotas[t])]
    task_list = [task_list[i] for i in rng.permutation(num_samples)]
    n = len(videos)
    epochs = -(-num_samples // n)
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])[:num_samples]
    partner_shift = rng.integers(1, n, size=num_samples) if n > 1 else np.zeros(num_samples, int)
    shards: list[ShardPlan] = []
    for s, start in enumerate(range(0, num_samples, samples_per_shard)):
        name = shard_name(s)
        samples = []
        for g in range(start, min(start + samples_per_shard, num_samples)):
            i = g - start
            task = task_list[g]
            partner = videos[(order[g] + partner_shift[g]) % n] if task in partner_tasks else None
            samples.append(SamplePlan(f"{name}_{i:06d}", s, i, task, videos[order[g]], partner))
        shards.append(ShardPlan(s, name, tuple(samples)))
    return shards
