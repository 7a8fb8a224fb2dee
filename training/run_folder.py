"""A run folder belongs to one run at a time and to one config.

``genprop-train`` writes a run into ``${paths.log_dir}/${name}``, a name that deliberately leaves
out where the data lives (``data.shards`` and co. are excluded from run folder names so that a
resubmission resumes the same folder). So two runs that differ only in their data would share a
folder, the second resuming, or overwriting, the first. :func:`claim_run_folder` prevents that
with :mod:`contracts.ownership`:

* the run's **identity** (:func:`run_identity`: ``data.shards``, ``data.latents``, ``model.net``
  and ``model.stage``, resolved) is recorded in the folder's owner marker, and a run of another
  identity is refused with a message naming what differs and how to start it elsewhere
  (``name=...``) or from this run's checkpoint (``resume=PATH``). Resuming with the same identity
  (``resume=auto``) works as before; the optimizer schedule, ``trainer.*`` (e.g. a raised
  ``trainer.max_steps``) and logging may change between resumes;
* the folder is **locked** for the whole run (released when the process ends, however it ends);
  a second run into it is refused naming the holder's pid. A SLURM requeue waits up to
  :data:`REQUEUE_WAIT_S` for the previous allocation's lock to go.

Only the global rank-0 process claims the folder; the other ranks of a DDP / FSDP run use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from contracts.ownership import MARKER, UNKNOWN_CONFIG, FolderError, owned_folder

TOOL = "genprop-train"
# The config keys that make a run what it is (see the module docstring).
IDENTITY_KEYS = ("data.shards", "data.latents", "model.net", "model.stage")
# Seconds a requeued SLURM job waits for the lock of its previous allocation (a network file
# system may release it late).
REQUEUE_WAIT_S = 120.0
# Environment variables holding a process's rank; any non-zero one means "not global rank 0".
_RANK_VARS = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


class RunFolderError(FileExistsError):
    """The run folder is another config's run or in use by another run (one line)."""


def is_global_rank_zero(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is global rank 0 (or not part of a multi-process run)."""
    env = os.environ if env is None else env
    return all(env.get(k, "").strip() in ("", "0") for k in _RANK_VARS)


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved values of :data:`IDENTITY_KEYS` (``None`` for a missing key)."""
    identity = {}
    for key in IDENTITY_KEYS:
        node = OmegaConf.select(cfg, key, default=None)
        if not OmegaConf.is_config(node):
            identity[key] = node
            continue
        try:
            identity[key] = OmegaConf.to_container(node, resolve=True)
        except OmegaConfBaseException:  # an interpolation only Hydra's app context resolves
            identity[key] = OmegaConf.to_container(node, resolve=False)
    return identity


def _other_run(run_dir: Path, marker: dict[str, Any], *, identity: dict[str, Any]) -> str:
    theirs = marker.get("identity") if isinstance(marker.get("identity"), dict) else {}
    differs = [k for k in identity if theirs.get(k) != identity[k]] or ["config"]
    return (
        f"run folder {run_dir} holds a run of another config (differs in: {', '.join(differs)}; "
        f"see {MARKER}); start this run under another name (name=NEW_NAME), or to continue from "
        f"that run's weights, name=NEW_NAME resume={run_dir / 'checkpoints' / 'last.ckpt'}"
    )


@contextlib.contextmanager
def claim_run_folder(cfg: DictConfig, run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for this run (see the module docstring) inside the block.

    Raises:
        RunFolderError: ``run_dir`` holds a run of another identity, or another run is using it.
    """
    if not is_global_rank_zero():
        yield
        return
    identity = run_identity(cfg)
    requeued = os.environ.get("SLURM_RESTART_COUNT", "").strip() not in ("", "0")
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(
            owned_folder(
                run_dir,
                tool=TOOL,
                config=identity,
                # A run folder written before owner markers: its config is unknown; the first
                # run that claims it records its own.
                adopt=lambda _folder: UNKNOWN_CONFIG,
                what="run folder",
                other_config=partial(_other_run, identity=identity),
                details={"identity": identity},
                wait_s=REQUEUE_WAIT_S if requeued else 0.0,
            )
        )
    except FolderError as e:
        raise RunFolderError(str(e)) from None
    with stack:
        yield
