"""One loaded GenProp model behind the page: its sampling defaults, one run at a time, step
progress, cancellation, and the files a run writes (result mp4, mask mp4, masks zip)."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.cases import frame_name
from contracts.tasks import TRACKING_PROMPT, task_index
from genprop.inference.propagate import PropagationResult, propagate
from genprop.inference.video_io import write_mask_dir, write_video


class RunCancelledError(Exception):
    """The user cancelled the run; raised from the step callback between denoising steps."""


@dataclass(frozen=True)
class SamplingChoice:
    """The sampling options of one run (None: the export's default for the task)."""

    steps: int | None = None
    guidance: float | None = None
    injection_weight: float | None = None
    mask_threshold: float | None = None
    seed: int = 0
    prompt: str | None = None


@dataclass(frozen=True)
class RunFiles:
    """What a run wrote: the edited video, the side-by-side video, the masks' PNG zip."""

    video: Path
    comparison: Path
    masks_zip: Path
    frames: int


class ModelRunner:
    """A loaded model; :meth:`run` propagates one edit at a time (a lock, besides the queue).

    Args:
        model: a :class:`genprop.modeling.model.GenPropModel` in eval mode.
        device: where it computes (``cpu`` or ``cuda``).
    """

    def __init__(self, model: Any, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}

    def defaults(self, task: str) -> dict[str, float | int]:
        """The export's sampling defaults for ``task`` (``config.json``'s ``sampling``)."""
        s = self.model.config.sampling
        return {
            "steps": int(s.steps),
            "guidance": float(s.guidance_for(task)),
            "injection_weight": float(s.injection_weight),
            "mask_threshold": float(s.mask_threshold_for(task)),
        }

    def cancel(self, session: str) -> bool:
        """Ask the run of ``session`` to stop at its next step; whether one was running."""
        event = self._cancel.get(session)
        if event is None:
            return False
        event.set()
        return True

    def run(
        self,
        video: np.ndarray,
        first: np.ndarray,
        task: str,
        choice: SamplingChoice,
        *,
        session: str = "",
        on_step: Callable[[int, int], None] | None = None,
    ) -> PropagationResult:
        """Propagate ``first`` through ``video`` with the export's defaults where unset.

        ``on_step(done, total)`` is called after each denoising step; :meth:`cancel` of the same
        ``session`` stops the run there with :class:`RunCancelledError`. A tracking run without a
        prompt uses the training prompt, as ``genprop-propagate`` does.

        Raises:
            ValueError: an option the model cannot take (names it).
            RunCancelledError: the run was cancelled.
        """
        task_index(task)  # a ValueError naming the valid tasks
        prompt = choice.prompt or None
        if prompt is None and task == "tracking":
            prompt = TRACKING_PROMPT
        event = threading.Event()

        def step(done: int, total: int) -> None:
            if event.is_set():
                raise RunCancelledError
            if on_step is not None:
                on_step(done, total)

        with self._lock:
            self._cancel[session] = event
            try:
                return propagate(
                    self.model,
                    video,
                    first,
                    task,
                    prompt=prompt,
                    steps=choice.steps,
                    guidance=choice.guidance,
                    injection_weight=choice.injection_weight,
                    mask_threshold=choice.mask_threshold,
                    seed=choice.seed,
                    progress=step,
                    device=self.device,
                )
            finally:
                self._cancel.pop(session, None)


def write_run(out_dir: Path, result: PropagationResult, fps: float, inputs: np.ndarray) -> RunFiles:
    """Write a result for the page: ``result.mp4``, ``comparison.mp4`` (the input, the result
    and the predicted mask side by side) and ``masks.zip`` (the MPD's probabilities as 0..255
    PNGs, ``00000.png``...).

    Args:
        out_dir: the run's folder (created).
        result: the propagation result.
        fps: frame rate of the written videos.
        inputs: ``(T, H, W, 3)`` uint8, the video that was propagated through.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    video = write_video(out_dir / "result.mp4", result.video, fps)
    grey = np.clip(np.rint(result.masks * 255.0), 0, 255).astype(np.uint8)
    side = np.concatenate([inputs, result.video, np.repeat(grey[..., None], 3, axis=-1)], axis=2)
    comparison = write_video(out_dir / "comparison.mp4", side, fps)
    folder = write_mask_dir(out_dir / "masks", result.masks)
    masks_zip = out_dir / "masks.zip"
    with zipfile.ZipFile(masks_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for t in range(len(result.masks)):
            zf.write(folder / frame_name(t), arcname=frame_name(t))
    return RunFiles(video, comparison, masks_zip, len(result.video))
