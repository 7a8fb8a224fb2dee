"""Process body of the sequence-parallel propagation test (``test_propagate_placement.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist


def propagate_rank(rank: int, world: int, port: int, export: str, folder: str, out: str) -> None:
    """One gloo rank: load the export, propagate with ``sequence_parallel=world``, save
    ``<out>/rank_<rank>.npz`` (video and masks)."""
    from genprop import GenPropModel, propagate

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = GenPropModel.from_pretrained(export, allowed_roots=[folder]).eval()
        video, first = clip()
        result = propagate(model, video, first, "removal", prompt="x", steps=2, guidance=2.0,
                           sequence_parallel=world)  # fmt: skip
        np.savez(Path(out) / f"rank_{rank}.npz", video=result.video, masks=result.masks)
    finally:
        dist.destroy_process_group()


def clip() -> tuple[np.ndarray, np.ndarray]:
    """A seeded 12-frame 40x44 input (two chunks of a 9-frame model) and its edited frame."""
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (12, 40, 44, 3), dtype=np.uint8)
    return video, video[0] // 2
