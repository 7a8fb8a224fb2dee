"""GenProp on a pretrained Wan2.x image-to-video backbone read from a local diffusers folder.

:func:`wan_config` turns a Wan2.x I2V diffusers pipeline folder into a :class:`GenPropConfig`
(``GenPropModel.from_config`` then loads the weights, locally, nothing is downloaded); see
:mod:`genprop.backbones.wan.pipeline_folder` for the layout and what is checked. Supported:
Wan2.1-I2V-14B-480P/720P
(CLIP image tokens), Wan2.2-I2V-A14B (two experts routed by timestep) and Wan2.2-TI2V-5B
(48-channel VAE, first frame by latent replacement with per-token timesteps); other checkpoints are
refused with a one-line error naming the class or field found.

:func:`write_tiny_wan_pipeline` writes a tiny random folder of each variant's real layout
(:mod:`genprop.backbones.wan.tiny`). From a shell::

    python -m genprop.backbones.wan.pretrained tiny-wan --out DIR [--variant wan2.2-a14b] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

from genprop.backbones.wan.folder import WAN_LAYOUT, wan_config
from genprop.backbones.wan.tiny import (
    DEFAULT_VARIANT,
    TINY_WAN_TRANSFORMER,
    TINY_WAN_VAE,
    TINY_WORDS,
    VARIANTS,
    write_tiny_wan_pipeline,
)

__all__ = [
    "TINY_WAN_TRANSFORMER",
    "TINY_WAN_VAE",
    "TINY_WORDS",
    "VARIANTS",
    "WAN_LAYOUT",
    "main",
    "wan_config",
    "write_tiny_wan_pipeline",
]


def main(argv: list[str] | None = None) -> int:
    """``tiny-wan --out DIR [--variant V] [--seed S]``: write a tiny random Wan folder.

    Returns:
        The exit status (0 ok, 2 bad arguments or an unwritable folder, with a one-line message).
    """
    parser = argparse.ArgumentParser(prog="python -m genprop.backbones.wan.pretrained")
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser(
        "tiny-wan", help="write a tiny random Wan pipeline folder in the model's real layout"
    )
    tiny.add_argument("--out", required=True, help="folder to write")
    tiny.add_argument(
        "--variant",
        choices=VARIANTS,
        default=DEFAULT_VARIANT,
        help=f"model layout (default {DEFAULT_VARIANT}, the one experiment=wan_paper uses)",
    )
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    try:
        out = write_tiny_wan_pipeline(args.out, seed=args.seed, variant=args.variant)
    except OSError as err:
        print(f"error: --out {args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
