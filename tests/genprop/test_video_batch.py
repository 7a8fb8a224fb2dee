"""VideoBatch: the typed pixel batch of a training step (validation, device moves)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from genprop_helpers import make_batch

from genprop import VideoBatch, preset
from genprop.modeling.latents import EncodedBatch, batch_size
from genprop.video_batch import check_batch_type


@pytest.fixture
def batch() -> VideoBatch:
    return make_batch(preset("cpu_test"), batch=2)


def test_a_complete_batch_validates_for_both_stages(batch: VideoBatch) -> None:
    assert batch.validate("genprop") is batch and batch.validate("i2v") is batch
    assert batch.batch_size == batch_size(batch) == 2


def test_i2v_needs_only_target_and_first(batch: VideoBatch) -> None:
    plain = VideoBatch(target=batch.target, first=batch.first)
    assert plain.validate("i2v") is plain
    with pytest.raises(ValueError, match=r"batch\.sce: missing"):
        plain.validate("genprop")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sce", None, r"batch\.sce: missing"),
        ("mask", torch.zeros(2, 4, 32), r"batch\.mask: expected a 4-D tensor, got \(2, 4, 32\)"),
        ("first", torch.zeros(2, 3, 16, 32), r"batch\.first: shape \(2, 3, 16, 32\), expected"),
        ("sce", torch.zeros(2, 3, 3, 32, 32), r"batch\.sce: shape \(2, 3, 3, 32, 32\)"),
        ("task", torch.zeros(3, dtype=torch.long), r"batch\.task: shape \(3,\), expected \(2,\)"),
        ("target", [1.0], r"batch\.target: expected a 5-D tensor, got list"),
        ("prompt", ["only one"], r"batch\.prompt: 1 entries for a batch of 2"),
    ],
)
def test_a_bad_field_is_named(batch: VideoBatch, field: str, value, message: str) -> None:
    bad = dataclasses.replace(batch, **{field: value})
    with pytest.raises(ValueError, match=message):
        bad.validate("genprop")


def test_an_unknown_stage_is_refused(batch: VideoBatch) -> None:
    with pytest.raises(ValueError, match="stage: expected one of"):
        batch.validate("bogus")


def test_to_moves_every_tensor_and_casts_only_floats(batch: VideoBatch) -> None:
    moved = batch.to("meta", dtype=torch.bfloat16)
    assert moved is not batch and moved.prompt == batch.prompt
    assert {n: t.device.type for n, t in moved.tensors().items()} == dict.fromkeys(
        ("target", "first", "task", "sce", "mask"), "meta"
    )
    assert moved.target.dtype == moved.mask.dtype == torch.bfloat16
    assert moved.task.dtype == torch.long
    assert batch.target.device.type == "cpu"  # the original is unchanged


def test_a_dict_batch_is_refused_with_the_expected_types(batch: VideoBatch) -> None:
    check_batch_type(batch, VideoBatch, EncodedBatch)
    with pytest.raises(TypeError, match="expected a VideoBatch or EncodedBatch, got dict"):
        check_batch_type(batch.tensors(), VideoBatch, EncodedBatch)
