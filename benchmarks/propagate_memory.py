"""Host memory of ``genprop-propagate`` against the video's length (``make
bench-propagate-memory``).

    python -m benchmarks.propagate_memory [--frames N] [--size HxW] [--out outputs/bench/...]

Writes a seeded synthetic mp4 of ``N`` and one of ``4N`` frames at ``--size`` (a moving square on
a gradient, H.264), saves a tiny random model (the ``cpu_test`` preset), and propagates each
video in a fresh process, one ``--steps`` step per chunk, to an mp4 plus a masks folder:

* ``stream``: the ``genprop-propagate`` command itself (frames read chunk by chunk, written as
  each chunk finishes);
* ``in_memory``: what the command did before it streamed (``read_video`` of the whole input,
  one ``propagate`` call, then the whole output written): the reference whose memory grows with
  the length.

Peak memory is the child's peak resident set (``ru_maxrss`` of the child's own ``os.wait4``
usage), which includes the interpreter, torch and the model: the figure to read is the ratio
``peak(4N) / peak(N)`` per mode, about 1 when memory is flat in the length.

Writes ``OUT.json`` (settings, one row per mode and length, the ratios) and ``OUT.md`` (a
markdown table, also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("stream", "in_memory")


def synthetic_frames(frames: int, height: int, width: int) -> Iterator[np.ndarray]:
    """Seeded frames: a square moving over a colour gradient (compresses like a real video)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), 0 * x], -1)
    side = max(2, min(height, width) // 4)
    for t in range(frames):
        frame = base.astype(np.uint8)
        top, left = (t * 3) % (height - side + 1), (t * 5) % (width - side + 1)
        frame[top : top + side, left : left + side] = 255
        yield frame


def synthetic_video(path: Path, frames: int, height: int, width: int) -> None:
    """Write :func:`synthetic_frames` as an H.264 mp4, or a PNG folder when ``path`` has no
    suffix."""
    from genprop.inference.video_io import Mp4Writer, write_frames_dir

    if not path.suffix:
        write_frames_dir(path, synthetic_frames(frames, height, width))
        return
    with Mp4Writer(path, 24.0) as writer:
        for frame in synthetic_frames(frames, height, width):
            writer.write(frame)


def in_memory_child(argv: list[str]) -> int:
    """The previous ``genprop-propagate``: whole input in memory, whole output written at once."""
    p = argparse.ArgumentParser()
    for flag in ("--model", "--video", "--first-frame", "--out", "--masks-out"):
        p.add_argument(flag, type=Path, required=True)
    p.add_argument("--steps", type=int, required=True)
    args = p.parse_args(argv)
    from genprop.inference.propagate import propagate
    from genprop.inference.video_io import read_image, read_video, write_mask_dir, write_video
    from genprop.modeling.model import GenPropModel

    video = read_video(args.video)
    model = GenPropModel.from_pretrained(args.model).eval()
    first = read_image(args.first_frame)
    result = propagate(model, video.frames, first, "removal", steps=args.steps)
    write_video(args.out, result.video, video.fps)
    write_mask_dir(args.masks_out, result.masks)
    return 0


def run_child(mode: str, inputs: dict[str, Path], out: Path, steps: int) -> dict[str, float]:
    """Propagate in a fresh process; return its wall time and peak resident set."""
    args = ["--model", inputs["model"], "--video", inputs["video"]]
    args += ["--first-frame", inputs["edit"], "--out", out / "out.mp4"]
    args += ["--masks-out", out / "masks", "--steps", str(steps)]
    if mode == "stream":
        cmd = [sys.executable, "-m", "genprop.cli.propagate", *args, "--task", "removal"]
    else:
        cmd = [sys.executable, "-m", "benchmarks.propagate_memory", "--in-memory-child", *args]
    env = os.environ | {"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    child = subprocess.Popen([str(c) for c in cmd], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{mode} run failed with exit code {child.returncode}: {cmd}")
    # ru_maxrss is in KiB on Linux.
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def markdown_table(report: dict[str, Any]) -> str:
    """One row per mode: peak RSS at N and 4N frames and their ratio."""
    n = report["frames"]
    lines = [
        f"| mode | peak RSS, {n} frames (MB) | peak RSS, {4 * n} frames (MB) | ratio 4N/N |",
        "|---|---|---|---|",
    ]
    for mode in report["modes"]:
        rows = {r["frames"]: r for r in report["rows"] if r["mode"] == mode}
        lines.append(
            f"| {mode} | {rows[n]['peak_rss_mb']:.0f} | {rows[4 * n]['peak_rss_mb']:.0f} | "
            f"{report['ratio'][mode]:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.propagate_memory", description=__doc__)
    p.add_argument("--frames", type=int, default=48, help="N: the short video's frames (>= 2)")
    p.add_argument("--size", default="360x640", help="HxW of the input videos")
    p.add_argument("--steps", type=int, default=1, help="denoising steps per chunk")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {list(MODES)}")
    p.add_argument(
        "--input", choices=("mp4", "frames"), default="mp4", help="input: mp4 or PNG frames folder"
    )
    p.add_argument("--out", type=Path, default=Path("outputs/bench/propagate_memory"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad arguments)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--in-memory-child"]:
        return in_memory_child(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: expected a comma list of {list(MODES)}, got {args.modes!r}")
    if args.frames < 2 or args.steps < 1:
        parser.error("--frames must be >= 2 and --steps >= 1")
    try:
        height, width = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size: expected HEIGHTxWIDTH, got {args.size!r}")
    if min(height, width) < 8:
        parser.error(f"--size: expected at least 8x8, got {args.size!r}")

    import torch
    from PIL import Image

    from genprop import GenPropModel, preset

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        GenPropModel.from_config(preset("cpu_test")).save_pretrained(work / "model")
        for frames in (args.frames, 4 * args.frames):
            video = work / (f"in{frames}.mp4" if args.input == "mp4" else f"in{frames}")
            synthetic_video(video, frames, height, width)
            edit = work / "edit.png"
            first = np.zeros((height, width, 3), np.uint8)
            first[: height // 2] = 128
            Image.fromarray(first).save(edit)
            inputs = {"model": work / "model", "video": video, "edit": edit}
            for mode in modes:
                out = work / f"{mode}{frames}"
                row = {"mode": mode, "frames": frames}
                row |= run_child(mode, inputs, out, args.steps)
                rows.append(row)
                print(f"{mode:>9} {frames:5d} frames: {row}", file=sys.stderr)
    peak = {(r["mode"], r["frames"]): r["peak_rss_mb"] for r in rows}
    report = {
        "frames": args.frames,
        "size": [height, width],
        "input": args.input,
        "steps": args.steps,
        "model": "cpu_test",
        "memory": "peak resident set of the child process (os.wait4 ru_maxrss)",
        "modes": modes,
        "rows": rows,
        "ratio": {m: round(peak[m, 4 * args.frames] / peak[m, args.frames], 3) for m in modes},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(report)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
