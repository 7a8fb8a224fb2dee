"""Samples -> batches: uint8 tensors in the loader, a :class:`~genprop.video_batch.VideoBatch`
on the device.

The loader ships compact uint8 tensors in a plain dict (4x less inter-process traffic than
float32; the stream adds its ``skipped`` count to it); the conversion to the genprop conventions,
the typed :class:`~genprop.video_batch.VideoBatch` the model reads, happens after the batch
reaches the device (:func:`to_model_batch`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from einops import rearrange

from contracts.schema import Sample
from contracts.tasks import TASKS
from genprop.video_batch import VideoBatch

TASK_INDEX = {t: i for i, t in enumerate(TASKS)}


def collate_samples(samples: list[Sample], *, num_frames: int | None = None) -> dict[str, Any]:
    """Stack decoded samples into a loader batch.

    Args:
        samples: decoded pairs of identical geometry.
        num_frames: keep the first ``num_frames`` frames (``None``: all).

    Returns:
        ``sce``/``target``: ``(B, T, H, W, 3)`` uint8; ``first``: ``(B, H, W, 3)`` uint8;
        ``mask``: ``(B, T, H, W)`` uint8; ``task``: ``(B,)`` long; ``prompt``, ``key``: lists.

    Raises:
        ValueError: naming the sample whose geometry differs from the first one's, or whose
            clip is shorter than ``num_frames``.
    """
    ref = samples[0].sce.shape
    for s in samples:
        if s.sce.shape != ref:
            raise ValueError(
                f"sample {s.key!r}: clip shape {s.sce.shape} differs from {ref} in the same batch; "
                "shards mixed into one run must share (frames, height, width)"
            )
        if num_frames is not None and s.sce.shape[0] < num_frames:
            raise ValueError(
                f"sample {s.key!r}: has {s.sce.shape[0]} frames, data.num_frames={num_frames}"
            )
    t = slice(None) if num_frames is None else slice(0, num_frames)
    return {
        "sce": torch.from_numpy(np.stack([s.sce[t] for s in samples])),
        "first": torch.from_numpy(np.stack([s.first for s in samples])),
        "target": torch.from_numpy(np.stack([s.target[t] for s in samples])),
        "mask": torch.from_numpy(np.stack([s.mask[t] for s in samples])),
        "task": torch.tensor([TASK_INDEX[s.meta["task"]] for s in samples], dtype=torch.long),
        "prompt": [str(s.meta.get("prompt", "")) for s in samples],
        "key": [s.key for s in samples],
    }


def to_model_batch(batch: dict[str, Any]) -> VideoBatch:
    """Loader batch (uint8, from :func:`collate_samples`) -> the model's float batch, on
    whatever device the batch is on.

    Returns:
        ``sce``/``target``: ``(B, T, 3, H, W)`` in [-1, 1]; ``first``: ``(B, 3, H, W)`` in
        [-1, 1]; ``mask``: ``(B, T, H, W)`` in {0, 1}; ``task``: ``(B,)`` long; ``prompt`` and
        ``key`` passed through.
    """

    def video(x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b t h w c -> b t c h w").float().div(127.5).sub(1.0)

    return VideoBatch(
        target=video(batch["target"]),
        first=rearrange(batch["first"], "b h w c -> b c h w").float().div(127.5).sub(1.0),
        task=batch["task"],
        sce=video(batch["sce"]),
        mask=batch["mask"].float(),
        prompt=None if batch.get("prompt") is None else list(batch["prompt"]),
        key=None if batch.get("key") is None else list(batch["key"]),
    )
