"""Choose pixel preservation on validation cases without resampling: score settings side by side.

Pixel preservation (:func:`genprop.inference.preserve.keep_input_pixels`) is a composite applied
after
sampling, so every setting can be scored on the *same* samples: run ``genprop-eval --preserve
off`` once on validation cases, then::

    python -m evaluation.preserve_sweep --cases VAL --outputs EVAL/genprop --out DIR \\
        --variant change=source=change,threshold=0.1 \\
        --variant linked=source=change,threshold=0.1,link_radius=1,fixed_region_tasks=outpainting

Each ``--variant NAME=FIELD=VALUE,...`` sets fields of
:class:`genprop.inference.preserve.PreserveConfig`
(mode is always ``pixel``; several tasks are joined with ``+``). The saved outputs are scored
too, as ``off``. Writes ``metrics.{json,md,png}`` under ``--out``, one "method" per variant.
The MPD masks are read back from the 8-bit PNGs ``genprop-eval`` saved (``<id>_masks/``), so
``source=mpd`` / ``union`` agree with sampling-time preservation up to that rounding.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

import numpy as np
import torch

from evaluation.cases import CaseError, list_cases, load_case, load_method_output
from evaluation.metrics_report import write_report
from evaluation.scoring import score_case
from genprop.inference.preserve import keep_input_pixels
from genprop.inference.video_io import VideoReadError
from genprop.sampling_options import PreserveConfig

# The settable fields and their types, from the dataclass itself (mode is always "pixel").
FIELD_TYPES = {k: v for k, v in typing.get_type_hints(PreserveConfig).items() if k != "mode"}


def parse_variant(spec: str) -> tuple[str, PreserveConfig]:
    """``"NAME=FIELD=VALUE,..."`` -> (NAME, the checked pixel PreserveConfig).

    Raises:
        ValueError: naming the spec and the bad part.
    """
    name, sep, body = spec.partition("=")
    if not sep or not name or name == "off":
        raise ValueError(f"--variant {spec!r}: expected NAME=FIELD=VALUE,... (NAME not 'off')")
    fields: dict[str, object] = {}
    for part in filter(None, body.split(",")):
        key, sep, value = part.partition("=")
        kind = FIELD_TYPES.get(key)
        if not sep or kind is None:
            raise ValueError(
                f"--variant {name}: {part!r}, expected FIELD=VALUE with FIELD in "
                f"{sorted(FIELD_TYPES)}"
            )
        try:
            if typing.get_origin(kind) is list:
                fields[key] = [t for t in value.split("+") if t]
            else:
                fields[key] = kind(value)
        except ValueError:
            raise ValueError(
                f"--variant {name}: {key}={value!r} is not a {kind.__name__}"
            ) from None
    cfg = PreserveConfig(mode="pixel", **fields)  # type: ignore[arg-type]
    cfg.check(f"--variant {name}")
    return name, cfg


def sweep(
    cases: Path, outputs: Path, variants: dict[str, PreserveConfig]
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, str]]:
    """Score the saved outputs (``off``) and each variant's composite on every case."""
    per_case: dict[str, dict[str, dict[str, float]]] = {"off": {}, **{n: {} for n in variants}}
    tasks: dict[str, str] = {}
    needs_mpd = [n for n, c in variants.items() if c.source != "change"]
    for ref in list_cases(cases):
        case = load_case(ref)
        tasks[case.id] = case.task
        out, soft = load_method_output(outputs, case)
        if soft is None and needs_mpd:
            raise CaseError(
                f"{outputs / (case.id + '_masks')}: missing; variants {needs_mpd} read the MPD "
                "masks (genprop-eval saves them)"
            )
        mask = np.zeros(out.shape[:3], np.float32) if soft is None else soft
        region = mask >= 0.5  # the MPD's region is the same for every variant
        per_case["off"][case.id] = score_case(case, out, region)
        for name, cfg in variants.items():
            fixed = case.task in cfg.fixed_region_tasks
            kept = keep_input_pixels(out, case.input, torch.from_numpy(mask), cfg, fixed=fixed)
            per_case[name][case.id] = score_case(case, kept, region)
    if not tasks:
        raise CaseError(f"{cases}: no cases")
    return per_case, tasks


def main(argv: list[str] | None = None) -> int:
    """Entry point: write metrics.{json,md,png} under ``--out``."""
    p = argparse.ArgumentParser(prog="python -m evaluation.preserve_sweep", description=__doc__)
    p.add_argument("--cases", type=Path, required=True, help="validation case folder")
    p.add_argument(
        "--outputs", type=Path, required=True, help="genprop-eval --preserve off: OUT/genprop"
    )
    p.add_argument(
        "--variant", action="append", required=True, help="NAME=FIELD=VALUE,... (repeat)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.{json,md,png}")
    args = p.parse_args(argv)
    variants: dict[str, PreserveConfig] = {}
    for spec in args.variant:
        try:
            name, cfg = parse_variant(spec)
        except ValueError as err:
            p.error(str(err))
        if name in variants:
            p.error(f"--variant: {name!r} given twice")
        variants[name] = cfg
    try:
        per_case, tasks = sweep(args.cases, args.outputs, variants)
    except (CaseError, VideoReadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    notes = [f"{n}: {dataclasses.asdict(c)}" for n, c in variants.items()]
    paths = write_report(args.out, per_case, tasks, notes=notes)
    print(f"wrote {paths['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
