"""Diffusers' flow-matching schedulers, configured as Wan's pipelines configure them.

:func:`genprop.inference.sampler.sample_latents` samples with GenProp's own Euler grid
(``"euler"``) or with one of these classes (never a copy of their update rules):

* ``"unipc"``: ``UniPCMultistepScheduler`` with ``prediction_type="flow_prediction"``,
  ``use_flow_sigmas=True`` and ``flow_shift`` (what Wan's diffusers folders ship, and what
  ``WanImageToVideoPipeline`` steps with);
* ``"flow_euler"``: ``FlowMatchEulerDiscreteScheduler`` with ``shift``.

The configuration is the pipeline folder's own ``scheduler/scheduler_config.json`` when it holds
the chosen class (its solver order, final sigma, ...), else the class defaults. The shift is always
the model's ``timestep_shift`` (Wan's own, read from the folder when the config was made, or the
user's override), and a UniPC scheduler always predicts flow: GenProp's velocity ``ε - x0`` is the
flow-prediction output these schedulers expect (``x0 = x_σ - σ·v``), so any other prediction type
in a folder would silently misread it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.jsonfile import read_json_object
from genprop.sampling_options import check_scheduler

# Scheduler name -> diffusers class name.
SCHEDULER_CLASSES = {
    "unipc": "UniPCMultistepScheduler",
    "flow_euler": "FlowMatchEulerDiscreteScheduler",
}


def folder_scheduler_config(folder: str | Path | None, class_name: str) -> dict[str, Any]:
    """The folder's ``scheduler/scheduler_config.json`` if it configures ``class_name``, else {}."""
    if folder is None:
        return {}
    path = Path(folder) / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return {}
    config = read_json_object(path, what="scheduler config")
    return config if config.get("_class_name") == class_name else {}


def build_scheduler(name: str, *, shift: float, folder: str | Path | None = None) -> Any:
    """A fresh diffusers scheduler for ``name`` (one per sampled clip: multistep schedulers keep
    the previous steps' outputs).

    Args:
        name: ``"unipc"`` or ``"flow_euler"`` (``"euler"`` has no scheduler object).
        shift: The flow-time shift (``flow_shift`` / ``shift``).
        folder: The Wan pipeline folder whose ``scheduler/`` configures the class, or None.

    Returns:
        A ``SchedulerMixin`` whose ``set_timesteps`` / ``step`` drive the sampling loop.

    Raises:
        ValueError: If ``name`` is not a diffusers scheduler of :data:`SCHEDULER_CLASSES`.
    """
    check_scheduler(name)
    if name not in SCHEDULER_CLASSES:
        raise ValueError(f"scheduler: {name!r} is GenProp's own sampler, not a diffusers scheduler")
    import diffusers

    class_name = SCHEDULER_CLASSES[name]
    cls = getattr(diffusers, class_name)
    config = folder_scheduler_config(folder, class_name)
    if name == "unipc":
        overrides = dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)
    else:
        # Dynamic (resolution-dependent) shifting is Flux's; Wan uses a fixed shift.
        overrides = dict(shift=shift, use_dynamic_shifting=False)
    return cls.from_config({**config, **overrides})
