"""genprop-app runs: the export's defaults, a progress call per step, cancellation, the files."""

from __future__ import annotations

import threading
import zipfile

import av
import numpy as np
import pytest
from app_helpers import EXPORT_STEPS

from genprop_app.runner import ModelRunner, RunCancelledError, SamplingChoice, write_run


def test_defaults_are_the_exports(tiny_model) -> None:
    d = ModelRunner(tiny_model).defaults("removal")
    assert d["steps"] == EXPORT_STEPS
    assert d == {
        "steps": EXPORT_STEPS,
        "guidance": tiny_model.config.sampling.guidance_for("removal"),
        "injection_weight": tiny_model.config.sampling.injection_weight,
        "mask_threshold": tiny_model.config.sampling.mask_threshold_for("removal"),
    }


def test_run_reports_each_step_and_writes_playable_files(tiny_model, toy, tmp_path) -> None:
    calls: list[tuple[int, int]] = []
    runner = ModelRunner(tiny_model)
    result = runner.run(
        toy.frames,
        toy.edit,
        "removal",
        SamplingChoice(),
        on_step=lambda done, total: calls.append((done, total)),
    )
    # 5 frames through a 4-frame model: 2 chunks of EXPORT_STEPS steps each.
    total = 2 * EXPORT_STEPS
    assert calls == [(k, total) for k in range(1, total + 1)]
    assert result.video.shape == toy.frames.shape
    files = write_run(tmp_path / "run", result, 8.0, toy.frames)
    with av.open(str(files.video)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
    with av.open(str(files.comparison)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (32, 96, 3), "input | result | mask"
    with zipfile.ZipFile(files.masks_zip) as zf:
        assert zf.namelist() == [f"{t:05d}.png" for t in range(5)]


def test_cancel_stops_the_run_at_the_next_step(tiny_model, toy) -> None:
    runner = ModelRunner(tiny_model)
    seen: list[int] = []

    def on_step(done: int, total: int) -> None:
        seen.append(done)
        if done == 1:
            assert runner.cancel("me")

    with pytest.raises(RunCancelledError):
        runner.run(toy.frames, toy.edit, "edit", SamplingChoice(), session="me", on_step=on_step)
    assert seen == [1], "no step runs after the cancel"
    assert not runner.cancel("me"), "nothing is running any more"


def test_one_run_at_a_time(tiny_model, toy) -> None:
    runner = ModelRunner(tiny_model)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first_step(done: int, total: int) -> None:
        if done == 1 and not inside.is_set():
            inside.set()
            release.wait(10)
            order.append("first done")

    def second_step(done: int, total: int) -> None:
        if done == 1:
            order.append("second started")

    a = threading.Thread(
        target=runner.run,
        args=(toy.frames, toy.edit, "edit", SamplingChoice()),
        kwargs={"session": "a", "on_step": first_step},
    )
    a.start()
    assert inside.wait(10)
    b = threading.Thread(
        target=runner.run,
        args=(toy.frames, toy.edit, "edit", SamplingChoice(steps=1)),
        kwargs={"session": "b", "on_step": second_step},
    )
    b.start()
    b.join(0.3)
    assert b.is_alive(), "the second run must wait for the first"
    release.set()
    a.join(30)
    b.join(30)
    assert order == ["first done", "second started"]


def test_bad_options_are_value_errors(tiny_model, toy) -> None:
    runner = ModelRunner(tiny_model)
    with pytest.raises(ValueError, match="guidance"):
        runner.run(toy.frames, toy.edit, "edit", SamplingChoice(guidance=float("nan")))
    with pytest.raises(ValueError, match="unknown task"):
        runner.run(toy.frames, toy.edit, "recolour", SamplingChoice())
    with pytest.raises(ValueError, match="edited_first_frame"):
        runner.run(toy.frames, np.zeros((8, 8, 3), np.uint8), "edit", SamplingChoice())
