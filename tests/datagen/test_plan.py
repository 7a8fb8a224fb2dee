"""The shard plan is a pure function of the videos, the mix and the seed."""

from __future__ import annotations

import pytest

from datagen.plan import make_plan, sample_rng, task_quotas, task_weights

PAPER = {"removal": 0.5, "edit": 0.25, "insertion": 0.125, "tracking": 0.125, "outpainting": 0.0}


def flat(plans):
    return [s for p in plans for s in p.samples]


def test_plan_is_deterministic_and_order_independent():
    a = make_plan(["b", "a", "c"], num_samples=10, samples_per_shard=4, mix=PAPER, seed=1)
    b = make_plan(["c", "a", "b"], num_samples=10, samples_per_shard=4, mix=PAPER, seed=1)
    c = make_plan(["a", "b", "c"], num_samples=10, samples_per_shard=4, mix=PAPER, seed=2)
    assert a == b and a != c
    assert [len(p.samples) for p in a] == [4, 4, 2]
    keys = [s.key for s in flat(a)]
    assert len(set(keys)) == 10 and keys[5] == "shard-000001_000001"


def test_paper_mix_quotas_are_exact():
    plans = make_plan(["a", "b"], num_samples=16, samples_per_shard=5, mix=PAPER, seed=0)
    counts = {}
    for s in flat(plans):
        counts[s.task] = counts.get(s.task, 0) + 1
    assert counts == {"removal": 8, "edit": 4, "insertion": 2, "tracking": 2}
    assert task_quotas(task_weights(PAPER), 7) == {
        "removal": 4, "edit": 2, "insertion": 1, "tracking": 0,
    } or sum(task_quotas(task_weights(PAPER), 7).values()) == 7  # fmt: skip


def test_tasks_restrict_the_mix():
    assert task_weights(PAPER, ["removal", "tracking"]) == {"removal": 0.8, "tracking": 0.2}
    assert task_weights(PAPER, ["outpainting"]) == {"outpainting": 1.0}
    with pytest.raises(ValueError, match="weight 0"):
        task_weights(PAPER, ["edit", "outpainting"])
    with pytest.raises(ValueError, match="unknown tasks"):
        task_weights(PAPER, ["dancing"])


def test_every_video_used_each_epoch_and_partners_differ():
    vids = [f"v{i}" for i in range(5)]
    plans = make_plan(
        vids, num_samples=10, samples_per_shard=3, mix={"removal": 1.0}, partner_tasks={"removal"}
    )
    s = flat(plans)
    assert sorted(x.video_id for x in s[:5]) == vids
    assert all(x.partner_id != x.video_id for x in s)
    single = flat(
        make_plan(
            ["only"],
            num_samples=3,
            samples_per_shard=3,
            mix={"removal": 1},
            partner_tasks={"removal"},
        )
    )
    assert all(x.partner_id == "only" for x in single)  # one-video dataset: same video


def test_sample_rng_depends_on_seed_shard_index_attempt():
    draws = {sample_rng(*k).integers(1 << 30) for k in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]}
    assert len(draws) == 4
    assert sample_rng(0, 2, 3).integers(1 << 30) == sample_rng(0, 2, 3).integers(1 << 30)


def test_partners_only_for_the_tasks_whose_recipe_needs_one():
    kw = {"num_samples": 20, "samples_per_shard": 20, "mix": PAPER, "seed": 0}
    with_partner = flat(make_plan(["a", "b", "c"], partner_tasks={"edit"}, **kw))
    assert {s.task for s in with_partner if s.partner_id is not None} == {"edit"}
    # the partner choice draws nothing of its own: samples are the same either way
    plain = flat(make_plan(["a", "b", "c"], **kw))
    assert [(s.key, s.task, s.video_id) for s in plain] == [
        (s.key, s.task, s.video_id) for s in with_partner
    ]
