"""``genprop-propagate``: propagate an edited first frame through a video with a GenProp model.

```
genprop-propagate --model DIR --video IN.mp4|FRAMES_DIR --first-frame EDIT.png --task removal \
    --out OUT.mp4|OUT_DIR [--prompt TEXT] [--steps N] [--guidance G] [--injection-weight W] \
    [--masks-out DIR] [--regions-out DIR [--mask-threshold P]] [--seed S] [--device cpu|cuda] \
    [--max-frames N] [--dtype bf16|fp32] [--offload none|model|sequential]
torchrun --nproc-per-node N -m genprop.cli.propagate ... --sequence-parallel N
```
The output has the input's size, length (or ``--max-frames``) and frame rate; ``--out`` ending in
``.mp4`` writes H.264, anything without a suffix a folder of PNG frames. ``--masks-out`` writes the
Mask Prediction Decoder's edit probabilities as 0..255 PNGs; ``--regions-out`` the edited region
they predict, 0/255 PNGs: the pixels whose probability reaches ``--mask-threshold`` (default: the
export's threshold for the task, ``config.json``'s ``sampling.task_mask_threshold``). Bad input
exits with code 2 and one line naming the file and the fix.

The input is decoded and the outputs written chunk by chunk (host memory flat in the video's
length). Outputs never go over inputs (an output that is, holds or lies inside an input, or two
outputs that overlap, are refused) and each is put in place whole at the end: an mp4 through a
temporary file, a folder by swapping in a new one; an existing folder is replaced only when it is
empty or a previous result (it has the marker file ``.genprop-result.json``).

``--dtype bf16`` loads the weights in bf16 (what diffusers keeps in fp32 for Wan stays fp32);
``--offload model|sequential`` keeps the weights on the CPU and moves each component (or layer) to
``--device`` only while it runs; ``--sequence-parallel N`` under ``torchrun`` splits the
transformer's tokens over N processes (gloo on CPU, nccl on CUDA), rank 0 writing the outputs.
See docs/propagation.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from contracts.interrupts import console_signals
from contracts.tasks import TASKS, TRACKING_PROMPT
from genprop.cli.usage import (
    EXIT_USAGE,
    OneLineArgumentParser,
    UsageError,
    add_preserve_flags,
    check_sampling_flags,
    preserve_from_args,
)
from genprop.inference.outputs import (
    OutputPathError,
    ResultOutputs,
    check_output_paths,
    check_result_folder,
)
from genprop.inference.video_io import VideoReadError, open_video, read_image
from genprop.sampling_options import check_mask_threshold

MODEL_FILES = ("config.json", "model.safetensors")
VIDEO_HINT = "--video must be an mp4 or a folder of PNG/JPG frames"


def check_model_dir(folder: Path) -> None:
    """Raise :class:`UsageError` unless ``folder`` holds a ``save_pretrained`` GenProp model."""
    if not folder.is_dir():
        raise UsageError(
            f"{folder}: model folder not found; --model must be a folder written by "
            "GenPropModel.save_pretrained (or a training export)"
        )
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise UsageError(
            f"{folder}: missing {' and '.join(missing)}; --model must be a folder "
            "written by GenPropModel.save_pretrained (or a training export)"
        )


def check_task(task: str) -> str:
    """Return ``task`` or raise :class:`UsageError` listing the valid tasks."""
    if task not in TASKS:
        raise UsageError(f"unknown --task {task!r}; valid tasks: {', '.join(TASKS)}")
    return task


def check_output_path(path: Path) -> None:
    """``--out`` must be an ``.mp4`` or a suffix-less folder path."""
    if path.suffix.lower() != ".mp4" and path.suffix and not path.is_dir():
        raise UsageError(f"{path}: --out must end in .mp4 (H.264 video) or be a folder for PNGs")
    mp4 = path.suffix.lower() == ".mp4" and not path.is_dir()
    if path.exists() and not mp4 and not path.is_dir():
        raise UsageError(f"{path}: --out is an existing file; give a folder for PNGs or an .mp4")
    if mp4 and path.exists() and not path.is_file():
        raise UsageError(f"{path}: --out exists and is not a file")


class InputFrames:
    """The input video, decoded frame by frame as the propagation asks for it.

    Attributes:
        first: the edited first frame, (H, W, 3) uint8, the video's frame size.
        fps: the video's frame rate.
        count: its number of frames (after ``--max-frames``).
        size: its frame size ``(W, H)``.
    """

    def __init__(self, video_path: Path, first_path: Path, max_frames: int | None) -> None:
        try:
            self._stream = open_video(video_path, max_frames=max_frames)
        except VideoReadError as e:
            raise UsageError(f"{e}; {VIDEO_HINT}") from e
        try:
            self.first = read_image(first_path)
        except VideoReadError as e:
            raise UsageError(f"{e}; --first-frame must be a PNG/JPG image") from e
        H, W = self._stream.height, self._stream.width
        if self.first.shape[:2] != (H, W):
            raise UsageError(
                f"{first_path}: edited first frame is {self.first.shape[1]}x"
                f"{self.first.shape[0]} but the video {video_path} is {W}x{H}; resize the edit "
                f"to {W}x{H} (the video's frame size)"
            )
        self.fps, self.count, self.size = self._stream.fps, self._stream.count, (W, H)

    def __iter__(self) -> Iterator[np.ndarray]:
        """The frames, once; a frame that cannot be read is a :class:`UsageError`."""
        try:
            yield from self._stream
        except VideoReadError as e:
            raise UsageError(f"{e}; {VIDEO_HINT}") from e


def load_model(
    folder: Path,
    device: str,
    allowed_roots: list[Path] | None = None,
    *,
    dtype: str = "fp32",
    offload: str = "none",
) -> Any:
    """Load a GenProp model on ``device`` (``cpu`` or ``cuda``) after checking the folder.

    ``allowed_roots`` (``--allow-path``) are folders outside the model folder that its config's
    paths (``text.path``, ...) may point into. ``dtype`` (``--dtype``) casts the weights at load;
    with ``offload`` other than ``"none"`` the model stays on the CPU (the offload hooks move it).
    """
    import torch

    from genprop.inference.placement import DTYPES
    from genprop.modeling.model import GenPropModel

    check_model_dir(folder)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
    try:
        model = GenPropModel.from_pretrained(
            folder,
            device=device if offload == "none" else "cpu",
            allowed_roots=allowed_roots or (),
            dtype=DTYPES[dtype],
        )
    except (OSError, ValueError) as e:
        raise UsageError(f"{e}; --model must be a valid GenProp save_pretrained folder") from e
    return model.eval()


def run_propagation(
    model: Any,
    video: np.ndarray,
    first: np.ndarray,
    task: str,
    *,
    prompt: str | None = None,
    desc: str = "propagate",
    **options: Any,
) -> Any:
    """:func:`genprop.inference.propagate` with a tqdm progress bar; ``options`` are passed through.

    A tracking run without a prompt uses the training prompt ``"track colored regions"``.
    """
    from tqdm.auto import tqdm

    from genprop.inference.propagate import propagate

    if prompt is None and task == "tracking":
        prompt = TRACKING_PROMPT
    options = {k: v for k, v in options.items() if v is not None}
    with tqdm(desc=desc, unit="step", file=sys.stderr, leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        return propagate(model, video, first, task, prompt=prompt, progress=progress, **options)


def build_parser() -> argparse.ArgumentParser:
    """The ``genprop-propagate`` argument parser."""
    p = OneLineArgumentParser(prog="genprop-propagate", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="save_pretrained model folder")
    p.add_argument("--video", type=Path, required=True, help="input .mp4 or frames folder")
    p.add_argument("--first-frame", type=Path, required=True, help="edited first frame (PNG/JPG)")
    p.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--out", type=Path, required=True, help="output .mp4, or a folder for PNGs")
    p.add_argument("--prompt", default=None, help="optional text prompt")
    p.add_argument("--steps", type=int, default=None, help="sampling steps per chunk")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--injection-weight", type=float, default=None, help="SCE injection scale 0..1")
    p.add_argument("--masks-out", type=Path, default=None, help="folder for MPD probabilities")
    p.add_argument("--regions-out", type=Path, default=None, help="folder for edited regions")
    p.add_argument(
        "--mask-threshold",
        type=float,
        default=None,
        help="probability in (0, 1) above which a pixel is in the edited region (default: the "
        "export's for the task)",
    )
    add_preserve_flags(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--max-frames", type=int, default=None, help="use the first N frames only")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="fp32", help="weights' dtype")
    p.add_argument(
        "--offload",
        choices=("none", "model", "sequential"),
        default="none",
        help="keep weights on the CPU: per component (model) or per layer (sequential)",
    )
    p.add_argument(
        "--sequence-parallel",
        type=int,
        default=1,
        metavar="N",
        help="split the tokens over the N processes of torchrun --nproc-per-node N",
    )
    add_allow_path(p)
    return p


def add_allow_path(p: argparse.ArgumentParser) -> None:
    """The ``--allow-path DIR`` option (repeatable) of the commands that load a model."""
    p.add_argument(
        "--allow-path",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="folder outside --model that its config.json paths may point into (repeatable; "
        "e.g. the Wan pipeline folder of a Wan export)",
    )


def check_paths(args: argparse.Namespace) -> None:
    """Refuse outputs over inputs or over each other, and folder targets holding foreign files."""
    check_output_path(args.out)
    try:
        check_output_paths(
            {"--video": args.video, "--first-frame": args.first_frame, "--model": args.model},
            {"--out": args.out, "--masks-out": args.masks_out, "--regions-out": args.regions_out},
        )
        for flag, folder in (
            ("--out", args.out if args.out.is_dir() or args.out.suffix.lower() != ".mp4" else None),
            ("--masks-out", args.masks_out),
            ("--regions-out", args.regions_out),
        ):
            if folder is not None:
                check_result_folder(folder.resolve(), flag)
    except OutputPathError as e:
        raise UsageError(str(e)) from None


@console_signals("genprop-propagate")
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        task = check_task(args.task)
        check_paths(args)
        if args.mask_threshold is not None:
            try:
                check_mask_threshold(args.mask_threshold, "--mask-threshold")
            except ValueError as e:
                raise UsageError(str(e)) from None
        if args.max_frames is not None and args.max_frames < 1:
            raise UsageError(f"--max-frames must be >= 1, got {args.max_frames}")
        check_sampling_flags(
            steps=args.steps, guidance=args.guidance, injection_weight=args.injection_weight
        )
        if args.sequence_parallel < 1:
            raise UsageError(f"--sequence-parallel must be >= 1, got {args.sequence_parallel}")
        device = args.device
        if args.sequence_parallel > 1:
            device = join_job(args.device, args.sequence_parallel)
        frames = InputFrames(args.video, args.first_frame, args.max_frames)
        model = load_model(
            args.model, device, args.allow_path, dtype=args.dtype, offload=args.offload
        )
        preserve = preserve_from_args(args, model.config.sampling.preserve)
        chunks = stream_propagation(
            model,
            frames,
            frames.first,
            task,
            prompt=args.prompt,
            frame_count=frames.count,
            steps=args.steps,
            guidance=args.guidance,
            injection_weight=args.injection_weight,
            seed=args.seed,
            preserve=preserve,
            mask_threshold=args.mask_threshold,
            offload=args.offload,
            sequence_parallel=args.sequence_parallel,
            device=device,
        )
        if not is_writer():
            for _ in chunks:  # sequence parallelism: every rank computes, rank 0 writes
                pass
            return 0
        with ResultOutputs(
            args.out, frames.fps, masks_out=args.masks_out, regions_out=args.regions_out
        ) as outputs:
            threshold = None
            for chunk in chunks:
                outputs.write(chunk.video, chunk.masks, chunk.regions)
                threshold = chunk.mask_threshold
            outputs.commit()
    except (UsageError, ValueError) as e:  # ValueError: input the model cannot take
        print(f"genprop-propagate: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    count = outputs.outputs["--out"].count
    W, H = frames.size
    print(f"wrote {args.out} ({count} frames, {W}x{H}, {frames.fps:g} fps)")
    if args.masks_out is not None:
        print(f"wrote masks to {args.masks_out}")
    if args.regions_out is not None:
        print(f"wrote regions (threshold {threshold:g}) to {args.regions_out}")
    return 0


def stream_propagation(
    model: Any,
    frames: Iterable[np.ndarray],
    first: np.ndarray,
    task: str,
    *,
    prompt: str | None = None,
    frame_count: int | None = None,
    desc: str = "propagate",
    **options: Any,
) -> Iterator[Any]:
    """:func:`genprop.inference.propagate_frames` with a tqdm progress bar: the output chunk by
    chunk (:class:`~genprop.inference.propagate.PropagatedChunk`) as :func:`run_propagation`
    would give it whole."""
    from tqdm.auto import tqdm

    from genprop.inference.propagate import propagate_frames

    if prompt is None and task == "tracking":
        prompt = TRACKING_PROMPT
    options = {k: v for k, v in options.items() if v is not None}
    with tqdm(desc=desc, unit="step", file=sys.stderr, leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        yield from propagate_frames(
            model,
            frames,
            first,
            task,
            prompt=prompt,
            progress=progress,
            frame_count=frame_count,
            **options,
        )


def join_job(device: str, size: int) -> str:
    """Join the ``torchrun`` job of ``--sequence-parallel size``; return this rank's device."""
    from genprop.inference.distributed import init_from_env

    try:
        return init_from_env(device, size)
    except ValueError as e:
        raise UsageError(str(e)) from None


def is_writer() -> bool:
    """Whether this process writes the outputs: rank 0 of a job, or the only process."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


if __name__ == "__main__":
    sys.exit(main())
