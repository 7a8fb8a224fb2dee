"""``genprop-toyworld``: write the toy world, its benchmark cases, or a preview picture.

Usage::

    genprop-toyworld write --out DIR [--videos N] [--seed S] [--size WxH] [--frames T] [--fps F]
                           [--reflection-prob P] [--max-objects K] [--workers W] [--force]
    genprop-toyworld benchmark --out CASES [--cases-per-task N] [--seed S] [--size WxH]
                               [--frames T] [--fps F] [--reflection-prob P] [--tasks a,b] [--force]
    genprop-toyworld preview --root DIR --out PNG [--videos K] [--steps S]

Progress goes to stderr; the last stdout line is the output path. A rerun over a complete output
with the same parameters does nothing unless ``--force``. ``write`` and ``benchmark`` write only a
new or empty folder or one they wrote themselves (``world.json`` / ``.genprop-owner.json``) with
the same parameters; ``--force`` allows any other and still touches only the files they write. A
second run into a folder being written is refused. Errors are one line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from contracts.interrupts import console_signals
from contracts.tasks import TASKS

from .benchmark import CASE_ORDER, write_benchmark
from .preview import write_preview
from .world import WorldConfig
from .writer import write_dataset


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` (or a single ``"N"`` for a square) -> ``(W, H)``."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WxH, e.g. 64x64") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 16:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WxH with sides >= 16")
    return parts[0], parts[1]


def _world_options(p: argparse.ArgumentParser, seed: int) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=seed, help="world seed")
    p.add_argument("--size", type=parse_size, default=(64, 64), help="frame size WxH")
    p.add_argument("--frames", type=int, default=24, help="frames per video")
    p.add_argument("--fps", type=float, default=6.0, help="frame rate recorded in metadata")
    p.add_argument(
        "--reflection-prob",
        type=float,
        default=0.5,
        help="probability that a video has a reflective floor",
    )
    p.add_argument("--max-objects", type=int, default=3, help="1..K objects per video")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genprop-toyworld", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser(
        "write", help="write a toy-world dataset (YouTube-VIS layout + ground truth)"
    )
    _world_options(w, seed=0)
    w.add_argument("--videos", type=int, default=64, help="number of videos")
    w.add_argument("--workers", type=int, default=1, help="worker processes")
    b = sub.add_parser("benchmark", help="write held-out evaluation cases, one set per task")
    _world_options(b, seed=10_000)
    b.add_argument("--cases-per-task", type=int, default=4, help="cases for each task")
    b.add_argument("--tasks", default=",".join(CASE_ORDER), help=f"comma list out of {TASKS}")
    pv = sub.add_parser("preview", help="draw frames | masks | effects | clean plate as a PNG")
    pv.add_argument("--root", required=True, help="a folder written by 'write'")
    pv.add_argument("--out", required=True, help="PNG to write")
    pv.add_argument("--videos", type=int, default=4, help="rows (videos) to show")
    pv.add_argument("--steps", type=int, default=3, help="time steps per row")
    return parser


@console_signals("genprop-toyworld")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "preview":
            out = write_preview(args.root, args.out, num_videos=args.videos, steps=args.steps)
        else:
            cfg = WorldConfig(
                width=args.size[0],
                height=args.size[1],
                num_frames=args.frames,
                fps=args.fps,
                reflection_prob=args.reflection_prob,
                max_objects=args.max_objects,
            )
            if args.command == "write":
                out = write_dataset(
                    args.out,
                    cfg,
                    num_videos=args.videos,
                    seed=args.seed,
                    workers=args.workers,
                    force=args.force,
                )
            else:
                tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
                out = write_benchmark(
                    args.out,
                    cfg,
                    cases_per_task=args.cases_per_task,
                    seed=args.seed,
                    tasks=tasks,
                    force=args.force,
                )
    except (ValueError, OSError, RuntimeError) as e:
        print(f"genprop-toyworld: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
