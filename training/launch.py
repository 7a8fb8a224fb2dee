"""What ``genprop-train`` needs before Hydra runs: config resolvers and the sweep-folder check.

Resolvers (registered by :func:`register_resolvers`):

* ``${launch_dir:}`` — the folder ``genprop-train`` was started from. It replaces
  ``${hydra:runtime.cwd}`` in ``paths.root_dir`` because a ``-m`` sweep resolves the launcher's
  ``submitit_folder`` (under ``paths``) before Hydra's runtime config exists. It is cached in the
  master config, and Hydra copies that cache into every sweep job, so a job on another node
  resolves the submitter's folder, not its own working directory.
* ``${mul:a,b}`` — a product (memory per task x tasks).
* ``${slurm_tasks:accelerator,devices}`` / ``${slurm_gpus:accelerator,devices}`` — SLURM tasks and
  GPUs per node from the trainer: one task per device, GPUs only for a GPU accelerator.

Run folders: a sweep point's folder is named after its overrides minus
``hydra.job.config.override_dirname.exclude_keys`` (where and how the run is executed). Sweeping
an excluded key would put several points into one folder, so :func:`check_sweep_overrides`
refuses it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

_GPU_ACCELERATORS = ("gpu", "cuda", "auto")


def slurm_tasks(accelerator: str, devices: int | str) -> int:
    """SLURM tasks per node for a trainer: one per device (Lightning's SLURM contract).

    Raises:
        ValueError: if ``devices`` is not a positive count (``auto``, a list of ids).
    """
    if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()):
        count = int(devices)
        if count > 0:
            return count
    raise ValueError(
        f"trainer.devices={devices!r}: SLURM starts one task per device, so the cluster "
        "profiles need a count; pass trainer.devices=N (devices per node)"
    )


def slurm_gpus(accelerator: str, devices: int | str) -> int | None:
    """GPUs per node to request: the device count on a GPU accelerator, none on CPU."""
    if str(accelerator) not in _GPU_ACCELERATORS:
        return None
    return slurm_tasks(accelerator, devices)


def register_resolvers() -> None:
    """Register the resolvers above (idempotent)."""
    if not OmegaConf.has_resolver("mul"):
        OmegaConf.register_new_resolver("mul", lambda a, b: a * b)
    if not OmegaConf.has_resolver("launch_dir"):
        OmegaConf.register_new_resolver("launch_dir", os.getcwd, use_cache=True)
    if not OmegaConf.has_resolver("slurm_tasks"):
        OmegaConf.register_new_resolver("slurm_tasks", slurm_tasks)
    if not OmegaConf.has_resolver("slurm_gpus"):
        OmegaConf.register_new_resolver("slurm_gpus", slurm_gpus)


def excluded_run_keys(config_file: Path) -> list[str]:
    """``hydra.job.config.override_dirname.exclude_keys`` of a primary config file."""
    cfg = OmegaConf.load(config_file)
    keys = OmegaConf.select(cfg, "hydra.job.config.override_dirname.exclude_keys", default=[])
    return [str(k) for k in keys]


def check_sweep_overrides(overrides: Sequence[str], excluded: Sequence[str]) -> None:
    """Refuse to sweep a key that does not name the run folder.

    Args:
        overrides: command-line overrides (``key=a,b`` sweeps, ``key=v`` single values).
        excluded: keys left out of the run folder's name.

    Raises:
        ValueError: naming the swept key.
    """
    overrides = [o for o in overrides if "=" in o and not o.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override() and key.lstrip("+~") in excluded:
            raise ValueError(
                f"{key}: cannot be swept, it is left out of run folder names "
                "(hydra.job.config.override_dirname.exclude_keys), so every point would "
                "share one folder; run one sweep per value, or name=... per value"
            )
