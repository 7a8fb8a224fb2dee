"""Resuming a run: which checkpoint to continue from, and the RNG state that goes with it.

What a resumed run gets back (``resume=auto`` or ``resume=PATH``):

* Lightning restores the model weights, optimizer, LR scheduler, ``global_step`` and loop
  counters, and the state of every callback (checkpointing, export) from the ``.ckpt``.
* :class:`training.module.GenPropLitModule` restores the EMA shadow weights and the global RNG
  states of this process (``torch`` CPU and CUDA, ``numpy``, ``random``) captured by
  :func:`capture_rng_state` when the checkpoint was written, and the count of steps skipped for
  NaN or inf (:mod:`training.nonfinite`). It first checks that the checkpoint's weights fit the
  model these options build (one line naming the first tensor that does not).
* The diffusion noise, timesteps and classifier-free-guidance dropout of step ``s`` are drawn from
  a generator seeded by ``(seed, s, rank)``, so they do not depend on any RNG history at all.
* The streaming data position is **not** a byte offset into a shard. The training stream is
  re-seeded from ``(seed, global_step, rank, worker)`` every time the data loader is iterated (see
  :class:`training.shard_stream.ShardStream`). A resumed run therefore draws a fresh but
  deterministic sample stream starting at the restored step; when the checkpoint falls on a
  data-epoch boundary (``global_step`` a multiple of ``data.epoch_batches``), the uninterrupted
  run re-seeded at exactly the same step, and the two runs see identical batches.
* The LR schedule's parameters (warmup, ``total_steps``) are part of the scheduler state, so they
  come from the checkpoint: raising ``trainer.max_steps`` on resume extends training at the
  schedule's final learning rate rather than stretching the cosine.
* Not restored: loader worker processes and their prefetched batches (rebuilt and re-seeded), the
  TensorBoard event file (a new one is appended in the same folder). The CSV log's
  ``metrics.csv`` is appended to (:class:`training.csv_logger.ResumableCSVLogger`).
* Checkpoints hold tensors and plain data only and are loaded with ``weights_only=True``; a
  checkpoint that needs anything else unpickled is refused (:mod:`training.safe_checkpoint`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The Lightning state file inside a sharded (trainer=fsdp) checkpoint folder.
SHARDED_METADATA = "meta.pt"

LAST_CHECKPOINT = "last.ckpt"


def find_resume_checkpoint(resume: str | None, checkpoint_dir: Path) -> Path | None:
    """Decide which checkpoint a run continues from.

    Args:
        resume: ``None``/``"never"`` (fresh run), ``"auto"`` (``checkpoint_dir/last.ckpt`` if it
            exists, else fresh) or the path of a ``.ckpt`` file.
        checkpoint_dir: the run's checkpoint folder (``${paths.run_dir}/checkpoints``).

    Returns:
        The checkpoint path, or ``None`` for a fresh run.

    Raises:
        FileNotFoundError: If an explicit path does not exist.
        FileExistsError: If a fresh run would overwrite an existing run's checkpoints.
    """
    last = checkpoint_dir / LAST_CHECKPOINT
    if resume in (None, "never", "null", ""):
        if last.exists():
            raise FileExistsError(
                f"{last} exists: this run directory already holds a run. Pass resume=auto to "
                "continue it, or name=... / paths.log_dir=... to start a new one."
            )
        return None
    if resume == "auto":
        return last if last.exists() else None
    path = Path(resume).expanduser()
    # A file (DDP / single device) or a sharded checkpoint folder (trainer=fsdp).
    if not (path.is_file() or (path / SHARDED_METADATA).is_file()):
        raise FileNotFoundError(
            f"resume={resume!r}: no checkpoint file (or sharded checkpoint folder) at {path}"
        )
    return path


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain lists (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed for one (run seed, global step, rank) triple (splitmix-style mixing)."""
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + rank * 0x94D049BB133111EB) & (
        (1 << 64) - 1
    )
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & ((1 << 64) - 1)
    x ^= x >> 32
    return x & ((1 << 63) - 1)
