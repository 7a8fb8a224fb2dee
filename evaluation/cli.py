"""``genprop-eval``: score methods and baselines on toy evaluation cases or a real benchmark.

```
genprop-eval --cases CASES [--method NAME=OUTDIR ...] [--baselines identity,paste_first_frame,...]
             [--model DIR [--steps N] [--guidance G[,TASK=G...]] [--injection-weight W]
              [--preserve off|latent|pixel] [--mask-threshold P[,TASK=P...]] [--seed S]
              [--device cpu|cuda]] [--out DIR] [--clip DIR]
genprop-eval --benchmark davis2017|prove-m|editverse --data DIR [--split SPLIT]
             [--method NAME=DIR ...] [--model DIR ...] [--baselines ...] [--out DIR]
             [--lpips DIR] [--dinov2 DIR] [--clip DIR]
```
- ``--benchmark`` (default ``toy``: the case folders below) picks a real-footage benchmark of
  :mod:`evaluation.boards`, read from ``--data`` (``--cases`` is for ``toy`` only); each board's
  module says what its data and method folders look like and how it scores them. The sampling
  options apply to the ``--model`` run as for ``toy``.
- ``--method NAME=OUTDIR`` scores existing outputs ``OUTDIR/<id>/%05d.png`` (or ``<id>.mp4``) and
  optional MPD masks ``OUTDIR/<id>_masks/``.
- ``--baselines`` (default: all; ``none`` to skip) computes the classical baselines from the case
  inputs, cached as PNGs under ``OUT/baselines/<name>/<id>/`` and reused by later runs.
- ``--model DIR`` runs GenProp on every case (``first_frame.png`` as the edit, the task and prompt
  from ``meta.json``), writing ``OUT/genprop/<id>/`` and ``OUT/genprop/<id>_masks/``, and scores it
  as method ``genprop``. ``--guidance 5,tracking=8`` samples tracking cases at guidance 8 and
  every other task at 5 (per-task values picked on validation cases, see ``make guidance-sweep``);
  a plain number applies to every task. Options not given take the export's own sampling defaults
  (``config.json``'s ``sampling``: steps, per-task guidance, preservation), as ``genprop-propagate``
  does. Outputs are reused when ``OUT/genprop/run.json`` shows
  the same model weights and sampling options.
- GenProp's MPD masks are saved as probabilities and scored as the edited region from the
  export's threshold for the task (``sampling.task_mask_threshold``, see ``make
  mask-threshold-sweep``) or ``--mask-threshold``; a new threshold rescores the same outputs.
  Other methods' mask PNGs count from 128.

``toy`` writes ``OUT/metrics.json``, ``OUT/metrics.md`` and ``OUT/metrics.png`` (see
:mod:`evaluation.metrics_report`); metrics exclude frame 0, the given edited first frame. A
benchmark writes ``OUT/metrics.json`` and ``OUT/metrics.md`` (see :mod:`evaluation.boards.common`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from contracts.cases import output_masks
from contracts.interrupts import console_signals
from contracts.tasks import TASKS
from evaluation.baselines import BASELINES, NotApplicableError, run_baseline
from evaluation.boards import BOARDS, load_board
from evaluation.boards.common import GenPropRun, prepare_run_dir
from evaluation.boards.common import parse_methods as parse_board_methods
from evaluation.cases import CaseError, EvalCase, list_cases, load_case, load_method_output
from evaluation.clip_score import ClipScorer, ClipUnavailableError
from evaluation.metrics_report import write_report
from evaluation.scoring import score_case
from genprop.cli.propagate import add_allow_path, load_model, run_propagation
from genprop.cli.usage import (
    EXIT_USAGE,
    OneLineArgumentParser,
    UsageError,
    add_preserve_flags,
    check_sampling_flags,
    preserve_from_args,
)
from genprop.inference.video_io import write_frames_dir, write_mask_dir
from genprop.sampling_options import MAX_GUIDANCE, PreserveConfig

GENPROP_METHOD = "genprop"


def parse_methods(specs: list[str], baselines: list[str]) -> dict[str, Path]:
    """``["NAME=DIR", ...]`` -> ``{NAME: DIR}``; names unique, distinct from baselines."""
    methods: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise UsageError(f"--method {spec!r}: expected NAME=OUTDIR")
        if name in methods or name in baselines or name == GENPROP_METHOD:
            raise UsageError(f"--method {spec!r}: the name {name!r} is already used")
        if not Path(folder).is_dir():
            raise UsageError(f"{folder}: --method {name} output folder not found")
        methods[name] = Path(folder)
    return methods


def parse_baselines(value: str) -> list[str]:
    """Comma list of baseline names (``all`` or ``none`` allowed)."""
    if value == "all":
        return list(BASELINES)
    if value in ("none", ""):
        return []
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise UsageError(
            f"--baselines: unknown {unknown}; valid: {', '.join(BASELINES)}, all, none"
        )
    return names


def parse_per_task(
    spec: str | None, flag: str, valid: Callable[[float], bool], expected: str
) -> dict[str, float]:
    """``"V"`` or ``"V,TASK=V,..."`` -> ``{"*": V, TASK: V, ...}`` (``{}`` for None).

    ``*`` is the value for tasks not named; without a leading plain number, unnamed tasks use the
    export's default. Every value must pass ``valid`` (``expected`` says what it takes).
    """
    if spec is None:
        return {}
    out: dict[str, float] = {}
    for i, part in enumerate(p.strip() for p in spec.split(",")):
        task, sep, value = part.rpartition("=") if "=" in part else ("*", "", part)
        if not sep and i:
            raise UsageError(f"{flag} {spec!r}: only the first entry may be a plain number")
        if sep and task not in TASKS:
            raise UsageError(f"{flag} {spec!r}: unknown task {task!r}; valid: {', '.join(TASKS)}")
        if task in out:
            raise UsageError(f"{flag} {spec!r}: {task!r} is given twice")
        try:
            out[task] = float(value)
        except ValueError:
            raise UsageError(f"{flag} {spec!r}: {value!r} is not a number") from None
        if not valid(out[task]):
            raise UsageError(f"{flag} {spec!r}: expected {expected}, got {value!r}")
    return out


def parse_guidance(spec: str | None) -> dict[str, float]:
    """``--guidance``: ``"G"`` or ``"G,TASK=G,..."`` (see :func:`parse_per_task`)."""
    return parse_per_task(
        spec,
        "--guidance",
        lambda g: math.isfinite(g) and 0 < g <= MAX_GUIDANCE,
        f"a positive finite scale up to {MAX_GUIDANCE:g}",
    )


def parse_mask_threshold(spec: str | None) -> dict[str, float]:
    """``--mask-threshold``: ``"P"`` or ``"P,TASK=P,..."``, probabilities in (0, 1)."""
    return parse_per_task(spec, "--mask-threshold", lambda t: 0 < t < 1, "a number in (0, 1)")


def value_for(values: dict[str, float], task: str) -> float | None:
    """The value of ``task`` under a :func:`parse_per_task` map (None: the export's default)."""
    return values.get(task, values.get("*"))


def _has_frames(folder: Path, T: int) -> bool:
    return folder.is_dir() and len(list(folder.glob("*.png"))) >= T


def ensure_baseline(name: str, case: EvalCase, root: Path) -> None:
    """Compute baseline ``name`` on ``case`` into ``root/<id>/`` unless already there."""
    if _has_frames(root / case.id, len(case.input)):
        return
    video = run_baseline(
        name, video=case.input, first=case.first, object_mask=case.object_mask, task=case.task
    )
    write_frames_dir(root / case.id, video)


def ensure_genprop(model: Any, case: EvalCase, root: Path, options: dict[str, Any]) -> None:
    """Run GenProp on ``case`` into ``root/<id>/`` and ``root/<id>_masks/`` unless done."""
    T = len(case.input)
    preserve = options["preserve"]
    if _has_frames(root / case.id, T) and _has_frames(output_masks(root, case.id), T):
        return
    result = run_propagation(
        model,
        case.input,
        case.first,
        case.task,
        prompt=case.prompt or None,
        desc=case.id,
        **{
            **options,
            "guidance": value_for(options["guidance"], case.task),
            "preserve": None if preserve is None else PreserveConfig(**preserve),
        },
    )
    write_frames_dir(root / case.id, result.video)
    write_mask_dir(output_masks(root, case.id), result.masks)


def build_parser() -> argparse.ArgumentParser:
    """The ``genprop-eval`` argument parser."""
    p = OneLineArgumentParser(prog="genprop-eval", description=__doc__.split("\n")[0])
    p.add_argument(
        "--benchmark",
        choices=("toy", *BOARDS),
        default="toy",
        help="toy: the case folders of --cases (default); else a real benchmark read from --data",
    )
    p.add_argument("--cases", type=Path, default=None, help="toy: case folder with index.json")
    p.add_argument("--data", type=Path, default=None, help="the benchmark's dataset folder")
    p.add_argument("--split", default=None, help="the benchmark's split (davis2017: val)")
    p.add_argument("--method", action="append", default=[], help="NAME=OUTDIR (repeatable)")
    p.add_argument("--baselines", default="all", help=f"comma list of {', '.join(BASELINES)}")
    p.add_argument("--out", type=Path, default=Path("outputs/eval"), help="report folder")
    p.add_argument("--clip", type=Path, default=None, help="local CLIP model folder")
    p.add_argument("--lpips", type=Path, default=None, help="local LPIPS weights folder")
    p.add_argument("--dinov2", type=Path, default=None, help="local DINOv2 model folder")
    p.add_argument("--model", type=Path, default=None, help="run this GenProp model on all cases")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", default=None, help="CFG scale G, or per task: G,tracking=G2,...")
    p.add_argument(
        "--mask-threshold",
        default=None,
        help="MPD probability scored as the edited region, P or per task: P,tracking=P2,... "
        "(default: the export's)",
    )
    p.add_argument("--injection-weight", type=float, default=None)
    p.add_argument(
        "--seam-period",
        type=int,
        default=None,
        help="token grid in pixels for the Seams metric (default: the --model's token size; "
        "without --model, Seams is not scored)",
    )
    add_preserve_flags(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    add_allow_path(p)
    return p


def token_pixels(model: Any) -> int:
    """Pixels per side of one of ``model``'s tokens: the codec's spatial factor times the
    backbone's spatial patch (8 for the demo's models, 16 for Wan)."""
    return int(model.codec.spatial_factor) * int(model.token_patch[1])


def _load_clip(folder: Path | None, device: str, notes: list[str]) -> ClipScorer | None:
    if folder is None:
        notes.append("CLIP_T/CLIP_I skipped: no --clip folder given")
        return None
    try:
        return ClipScorer(folder, device=device)
    except ClipUnavailableError as e:
        notes.append(f"CLIP_T/CLIP_I skipped: {e}")
        return None


def _genprop_run(args: argparse.Namespace) -> GenPropRun | None:
    """Check the sampling flags and load ``--model`` with them (None without ``--model``)."""
    guidance = parse_guidance(args.guidance)
    mask_thresholds = parse_mask_threshold(args.mask_threshold)
    check_sampling_flags(steps=args.steps, guidance=None, injection_weight=args.injection_weight)
    if args.model is None:
        return None
    model = load_model(args.model, args.device, args.allow_path)
    preserve = preserve_from_args(args, model.config.sampling.preserve)
    options = {
        "steps": args.steps,
        "guidance": guidance,
        "injection_weight": args.injection_weight,
        "seed": args.seed,
        "preserve": None if preserve is None else dataclasses.asdict(preserve),
    }
    return GenPropRun(model, args.model, options, mask_thresholds)


def run_board(args: argparse.Namespace) -> int:
    """``--benchmark NAME`` (not toy): check the shared flags, then the board scores and reports
    (:mod:`evaluation.boards`)."""
    if args.cases is not None:
        raise UsageError(f"--cases is for --benchmark toy; {args.benchmark} reads --data")
    if args.data is None:
        raise UsageError(f"--benchmark {args.benchmark} needs --data DIR, its dataset folder")
    if not args.data.is_dir():
        raise UsageError(f"{args.data}: --data folder not found")
    module = BOARDS[args.benchmark]
    try:
        board = load_board(args.benchmark)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise UsageError(f"--benchmark {args.benchmark}: {module} is not installed") from None
    args.methods = parse_board_methods(args.method, (GENPROP_METHOD, *BASELINES))
    args.genprop = _genprop_run(args)
    paths = board.run(args)
    print(paths["md"].read_text())
    for problem in json.loads(paths["json"].read_text()).get("errors", []):
        print(f"genprop-eval: warning: {problem}", file=sys.stderr)
    print(f"wrote {paths['json']}, {paths['md']}")
    return 0


@console_signals("genprop-eval")
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"{args.out}: --out must be a folder, but it is a file")
        if args.benchmark != "toy":
            return run_board(args)
        if args.cases is None:
            raise UsageError(
                "--cases CASES is required for the toy benchmark (or give --benchmark NAME "
                "--data DIR)"
            )
        if args.data is not None or args.split is not None:
            raise UsageError("--data and --split are for --benchmark NAME; toy reads --cases")
        refs = list_cases(args.cases)
        baselines = parse_baselines(args.baselines)
        methods = parse_methods(args.method, baselines)
        run = _genprop_run(args)
    except (UsageError, CaseError) as e:
        print(f"genprop-eval: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    model = None if run is None else run.model
    seam_period = args.seam_period
    if seam_period is None and model is not None:
        seam_period = token_pixels(model)
    if seam_period is not None and seam_period < 2:
        print(
            f"genprop-eval: error: --seam-period must be >= 2, got {seam_period}", file=sys.stderr
        )
        return EXIT_USAGE
    if not (methods or baselines or model is not None):
        print(
            "genprop-eval: error: nothing to score; give --method, --baselines or --model",
            file=sys.stderr,
        )
        return EXIT_USAGE
    notes: list[str] = []
    clip = _load_clip(args.clip, args.device, notes)
    folders = {n: args.out / "baselines" / n for n in baselines} | methods
    options = {} if run is None else run.options
    if run is not None:
        folders[GENPROP_METHOD] = args.out / GENPROP_METHOD
        prepare_run_dir(folders[GENPROP_METHOD], args.model, options)
    per_case: dict[str, dict[str, dict[str, float]]] = {m: {} for m in folders}
    case_tasks: dict[str, str] = {}
    not_applicable: dict[str, list[str]] = {}
    errors: list[str] = []
    used_thresholds: dict[str, float] = {}
    for ref in tqdm(refs, desc="cases", unit="case", file=sys.stderr):
        try:
            case = load_case(ref)
        except CaseError as e:
            errors.append(f"case {ref.id}: skipped, {e}")
            continue
        case_tasks[case.id] = case.task
        for name, folder in folders.items():
            try:
                threshold = 0.5  # a mask PNG's midpoint, for methods that write binary masks
                if name in baselines:
                    ensure_baseline(name, case, folder)
                elif name == GENPROP_METHOD:
                    ensure_genprop(model, case, folder, options)
                    threshold = value_for(run.mask_thresholds, case.task) or (
                        model.config.sampling.mask_threshold_for(case.task)
                    )
                    used_thresholds[case.task] = threshold
                output, values = load_method_output(folder, case)
                masks = None if values is None else values >= threshold
                per_case[name][case.id] = score_case(case, output, masks, clip, seam_period)
            except NotApplicableError:
                if name not in not_applicable.setdefault(case.task, []):
                    not_applicable[case.task].append(name)
            except (CaseError, ValueError) as e:
                errors.append(f"{name} on {case.id}: {e}")
    if seam_period is not None:
        notes.append(
            f"Seams: the step across the lines of a {seam_period}-pixel grid (the token grid) over "
            "the step between other neighbours, inside the edit and object masks; 1 = no grid"
        )
    if used_thresholds:
        notes.append(
            "GenProp's MPD masks count as the edited region where their probability reaches "
            + ", ".join(f"{t:g} ({task})" for task, t in sorted(used_thresholds.items()))
        )
    paths = write_report(
        args.out, per_case, case_tasks, not_applicable=not_applicable, errors=errors, notes=notes
    )
    print(paths["md"].read_text())
    for problem in errors:
        print(f"genprop-eval: warning: {problem}", file=sys.stderr)
    print(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
