"""A local Wan2.x image-to-video diffusers folder -> a checked :class:`GenPropConfig`.

The folder is the model's own diffusers layout (nothing is downloaded); the layout, and what is
checked before any weight is read, are in :mod:`genprop.backbones.wan.pipeline_folder`, which
reads the folder into the config's ``config.json`` form (the Wan family's ``read_folder``).
:func:`wan_config` is that reader with a :class:`GenPropConfig` out, through
``GenPropConfig.from_folder(path, kind="wan", ...)``.
"""

from __future__ import annotations

from pathlib import Path

from genprop.backbones.wan.pipeline_folder import (
    A14B_SAMPLE_SHIFT,
    DEFAULT_SHIFT,
    PIPELINES,
    WAN_LAYOUT,
    read_wan_folder,
)
from genprop.configs import GenPropConfig

__all__ = [
    "A14B_SAMPLE_SHIFT",
    "DEFAULT_SHIFT",
    "PIPELINES",
    "WAN_LAYOUT",
    "read_wan_folder",
    "wan_config",
]


def wan_config(
    path: str | Path,
    *,
    sce_blocks: int | None = None,
    num_frames: int = 33,
    height: int = 480,
    width: int = 832,
    text_max_tokens: int = 512,
    timestep_shift: float | None = None,
    transformer_subfolder: str = "transformer",
) -> GenPropConfig:
    """A GenProp config for the Wan2.x I2V diffusers pipeline folder at ``path``.

    Args:
        path: Local pipeline folder; stored resolved, so exports made from this config find the
            (never saved) text and image encoders again.
        sce_blocks: Backbone blocks copied into each Selective Content Encoder. Default: half the
            transformer's layers (20 of Wan-14B's 40; ``sce_blocks=24`` reproduces the paper's
            24 of 40).
        num_frames: Pixel frames per clip, 1 + a multiple of the VAE's temporal factor (4k + 1).
        height: Pixel height, a multiple of VAE spatial factor x patch size (16 for Wan2.1/2.2).
        width: Pixel width, same rule (default 480x832: Wan's 480P size).
        text_max_tokens: Prompt tokens kept (models with CLIP image tokens need exactly 512).
        timestep_shift: Flow-time shift of training and sampling. None: the model's own —
            Wan2.2-A14B's sample_shift 5.0, else the folder's scheduler ``flow_shift`` (3.0 if
            there is none).
        transformer_subfolder: ``transformer`` (both experts of Wan2.2-A14B, routed at its
            ``boundary_ratio``), or one expert's folder alone (e.g. ``transformer_2``, no routing).

    Raises:
        FileNotFoundError: A part of the layout is missing (named, with the expected layout).
        ValueError: The checkpoint or geometry is not supported (names the file, field and rule).
    """
    return GenPropConfig.from_folder(
        path,
        kind="wan",
        sce_blocks=sce_blocks,
        num_frames=num_frames,
        height=height,
        width=width,
        text_max_tokens=text_max_tokens,
        timestep_shift=timestep_shift,
        transformer_subfolder=transformer_subfolder,
    )
