"""Wan's own sampling defaults, which a config read from a Wan pipeline folder carries.

A Wan export then samples as Wan does (its ``sampling`` section; ``propagate`` and the CLIs use it
unless told otherwise), not with the tiny DiT's 20 Euler steps without guidance:

* scheduler: the folder's ``scheduler/scheduler_config.json`` class (``UniPCMultistepScheduler``
  in the published Wan2.1/2.2 I2V diffusers folders -> ``"unipc"``); UniPC when the folder has
  none or names a class GenProp does not step with (Wan's own sampler is flow UniPC);
* steps: 40 for the I2V models: Wan2.1's ``generate.py`` (``_validate_args``: "The default
  sampling steps are 40 for image-to-video tasks and 50 for text-to-video tasks") and Wan2.2's
  ``wan/configs/wan_i2v_A14B.py`` (``sample_steps = 40``); 50 for Wan2.2-TI2V-5B
  (``wan/configs/wan_ti2v_5B.py``, ``sample_steps = 50``);
* guidance: 5.0 for Wan2.1 (``generate.py``'s ``--sample_guide_scale`` default, and diffusers'
  Wan2.1 I2V example) and TI2V-5B (``sample_guide_scale = 5.0``); 3.5 for Wan2.2-I2V-A14B's
  both experts (``wan_i2v_A14B.py``: ``sample_guide_scale = (3.5, 3.5)  # low noise, high
  noise``): equal scales, so one ``guidance`` reproduces it, as ``WanImageToVideoPipeline`` does
  when ``guidance_scale_2`` is None;
* shift: the config's ``timestep_shift`` (the folder's ``flow_shift``, or A14B's 5.0; see
  :mod:`genprop.backbones.wan.pipeline_folder`), which the schedulers are built with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.jsonfile import read_json_object
from genprop.inference.schedulers import SCHEDULER_CLASSES

WAN_SAMPLE_STEPS = 40
TI2V_SAMPLE_STEPS = 50
WAN_GUIDANCE = 5.0
A14B_GUIDANCE = 3.5
WAN_SCHEDULER = "unipc"


def folder_scheduler(root: Path) -> str:
    """The scheduler name of the folder's ``scheduler/scheduler_config.json`` class."""
    path = root / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return WAN_SCHEDULER
    class_name = read_json_object(path, what="scheduler config").get("_class_name")
    by_class = {cls: name for name, cls in SCHEDULER_CLASSES.items()}
    return by_class.get(class_name, WAN_SCHEDULER)


def wan_sampling_defaults(root: Path, *, a14b: bool, ti2v: bool) -> dict[str, Any]:
    """The ``sampling`` section (``SamplingConfig`` fields) of a config read from ``root``.

    Args:
        root: The Wan pipeline folder.
        a14b: Whether the folder is Wan2.2-A14B's (a ``boundary_ratio``; also when one expert's
            transformer is used alone).
        ti2v: Whether the model is Wan2.2-TI2V-5B (first frame by latent replacement).
    """
    return {
        "scheduler": folder_scheduler(root),
        "steps": TI2V_SAMPLE_STEPS if ti2v else WAN_SAMPLE_STEPS,
        "guidance": A14B_GUIDANCE if a14b else WAN_GUIDANCE,
    }
