"""Stage 0 of the demo: train the learned video autoencoder (``codec.kind: learned``).

    python -m training.codec_train --data TOYWORLD_DIR_OR_SHARDS --out DIR \\
        [--minutes M | --steps N] [--latent-channels C] [--seed S] [--heldout DIR_OR_SHARDS]

Trains :class:`genprop.modeling.learned_codec.LearnedVideoCodec` on single frames with a
reconstruction loss (``--loss``: squared error, what PSNR measures, or L1) plus an optional L1 term
on image gradients (``--edge-weight``), Adam and a cosine learning-rate decay over the step or time
budget. With ``--linear-skip 1`` the codec's linear path starts at the principal components of the
training frames' cells, so training starts from the best linear codec of that size. Then it
stores the per-channel mean / std of the training frames' latents (the latent normalisation) and
measures the reconstruction PSNR on held-out frames: those of ``--heldout`` (e.g. a toy world of
another seed), else the last ``--heldout-fraction`` of the videos, never trained on. Writes::

    DIR/codec.json          architecture (+ the held-out PSNR), read by codec.kind=learned
    DIR/codec.safetensors   weights and latent statistics
    DIR/report.json         held-out PSNR before and after training, train PSNR, steps, time,
                            threads, frames, skipped videos, loss curve

A user error prints one line ``codec_train: error: ...`` and exits 2; a run whose loss becomes
NaN or inf stops with one line and exit status 1, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn.functional as F

from contracts.jobs import write_json_atomic
from genprop.modeling.learned_codec import (
    ARCH_BOUNDS,
    ARCH_FIELDS,
    CodecFolderError,
    LearnedVideoCodec,
)
from training.codec_frames import FrameSourceError, VideoFrames, read_frames

PROG = "codec_train"
REPORT_NAME = "report.json"
EXIT_USAGE = 2
EVAL_FRAMES = 256  # held-out frames scored at each progress line (all of them at the end)
PCA_FRAMES = 512  # training frames whose cells start the linear path (--linear-skip 1)


class TrainingDiverged(RuntimeError):  # noqa: N818 - reads as what happened to the run
    """The loss became NaN or inf; nothing is written."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="toy world folder (world.json) or pixel shards")
    p.add_argument("--out", required=True, help="output codec folder")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="train for this wall-clock time")
    budget.add_argument("--steps", type=int, help="train for this many steps (default 2000)")
    p.add_argument("--latent-channels", type=int, default=8, help="latent channels C")
    p.add_argument("--width", type=int, default=16, help="channels of the first conv stage")
    p.add_argument("--downsamples", type=int, default=2, help="stride-2 stages (2: 4x spatial)")
    p.add_argument(
        "--unshuffle",
        type=int,
        default=1,
        help="pixel-unshuffle factor before the first conv (2 with --downsamples 1: 4x spatial)",
    )
    p.add_argument(
        "--linear-skip",
        type=int,
        default=0,
        help="1: a linear path beside the convolutions, started at the cells' principal components",
    )
    p.add_argument("--loss", choices=("mse", "l1"), default="mse", help="reconstruction loss")
    p.add_argument("--batch-size", type=int, default=16, help="frames per step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate")
    p.add_argument("--edge-weight", type=float, default=0.0, help="weight of the gradient term")
    p.add_argument("--heldout", help="held-out frames: another toy world folder or shards")
    p.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.1,
        help="without --heldout: the last fraction of the videos, held out",
    )
    p.add_argument("--max-frames", type=int, default=20000, help="frames read at most per source")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=100, help="steps between progress lines")
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Raise ValueError naming the first flag out of range."""
    checks = [
        ("--steps", args.steps is None or args.steps >= 1, "an integer >= 1"),
        ("--minutes", args.minutes is None or args.minutes > 0, "a number > 0"),
        ("--batch-size", args.batch_size >= 1, "an integer >= 1"),
        ("--lr", math.isfinite(args.lr) and args.lr > 0, "a number > 0"),
        ("--edge-weight", math.isfinite(args.edge_weight) and args.edge_weight >= 0, ">= 0"),
        ("--heldout-fraction", 0 < args.heldout_fraction < 1, "a number in (0, 1)"),
        ("--max-frames", args.max_frames >= 2, "an integer >= 2"),
        ("--threads", args.threads >= 1, "an integer >= 1"),
        ("--log-every", args.log_every >= 1, "an integer >= 1"),
    ]
    for flag, ok, expected in checks:
        if not ok:
            raise ValueError(f"{flag}: expected {expected}, got {getattr(args, _dest(flag))}")
    for name in ARCH_FIELDS:
        low, high = ARCH_BOUNDS[name]
        value = getattr(args, name)
        if not low <= value <= high:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag}: expected an integer in [{low}, {high}], got {value}")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def split_frames(
    train: VideoFrames, heldout: VideoFrames | None, fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) uint8 training and held-out frames; without ``heldout`` the last
    ``fraction`` of the videos (at least one) are held out.

    Raises:
        ValueError: when there are not enough videos to hold some out, or the sizes differ.
    """
    if heldout is None:
        if len(train.videos) < 2:
            raise ValueError("--data: one video only; give --heldout or more videos")
        n_held = max(1, round(len(train.videos) * fraction))
        fit, held = train.videos[:-n_held], train.videos[-n_held:]
    else:
        fit, held = train.videos, heldout.videos
    fit_frames, held_frames = torch.cat(fit), torch.cat(held)
    if fit_frames.shape[1:] != held_frames.shape[1:]:
        raise ValueError(
            f"--heldout: frames are {tuple(held_frames.shape[1:])}, training frames "
            f"{tuple(fit_frames.shape[1:])}; expected the same size"
        )
    return fit_frames, held_frames


def _to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float in [-1, 1]."""
    return frames.float() / 127.5 - 1.0


def _edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, edge_weight: float, kind: str = "mse"
) -> torch.Tensor:
    """Squared error (``kind`` "mse") or L1 on pixels + ``edge_weight`` x L1 on vertical and
    horizontal pixel differences."""
    loss = F.mse_loss(pred, target) if kind == "mse" else F.l1_loss(pred, target)
    if edge_weight:
        for a, b in zip(_edges(pred), _edges(target), strict=True):
            loss = loss + edge_weight * F.l1_loss(a, b)
    return loss


@torch.no_grad()
def heldout_psnr(codec: LearnedVideoCodec, frames: torch.Tensor, batch: int = 64) -> float:
    """PSNR (dB) of ``decode(encode(x))`` over held-out uint8 frames (N, 3, H, W), through the
    codec interface (normalised latents, output clamped to [-1, 1])."""
    codec.eval()
    sq, n = 0.0, 0
    for i in range(0, len(frames), batch):
        x = _to_unit(frames[i : i + batch])[:, None]  # (N, T=1, 3, H, W)
        y = codec.decode(codec.encode(x))
        sq += float(((y - x) ** 2).sum())
        n += x.numel()
    return 100.0 if sq == 0 else 10 * math.log10(4 * n / sq)


@torch.no_grad()
def latent_stats(
    codec: LearnedVideoCodec, frames: torch.Tensor, batch: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (C,) of the un-normalised latents of ``frames``."""
    codec.eval()
    zs = [
        codec.encode_frames(_to_unit(frames[i : i + batch])) for i in range(0, len(frames), batch)
    ]
    z = torch.cat(zs).transpose(0, 1).flatten(1)  # (C, N*h*w)
    return z.mean(1), z.std(1).clamp_min(1e-6)


def train_codec(args: argparse.Namespace, fit: torch.Tensor, held: torch.Tensor) -> dict[str, Any]:
    """Train a codec on ``fit`` (N, 3, H, W) uint8, save it to ``args.out``; the report."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    codec = LearnedVideoCodec(**{name: getattr(args, name) for name in ARCH_FIELDS})
    codec.check_size(fit.shape[-2], fit.shape[-1])
    if codec.linear_skip:
        pick = torch.randperm(len(fit), generator=torch.Generator().manual_seed(args.seed))
        codec.init_linear_skip(_to_unit(fit[pick[:PCA_FRAMES]]))
    initial = heldout_psnr(codec, held)
    opt = torch.optim.Adam(codec.parameters(), lr=args.lr)
    steps = args.steps or 2000  # without --minutes
    budget_s = None if args.minutes is None else 60.0 * args.minutes
    # Linear warm-up of the learning rate (short runs: a tenth of them).
    warmup = 50 if budget_s is not None else max(1, min(50, steps // 10))
    curve: list[dict[str, float]] = []
    start = time.monotonic()
    step, running = 0, 0.0
    codec.train()
    while True:
        elapsed = time.monotonic() - start
        done = elapsed / budget_s if budget_s is not None else step / steps
        if done >= 1.0:
            break
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * done))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(fit), (args.batch_size,), generator=gen)
        x = _to_unit(fit[idx])
        flip = torch.rand(args.batch_size, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        pred = codec.decode_frames(codec.encode_frames(x))
        loss = reconstruction_loss(pred, x, args.edge_weight, args.loss)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(f"step {step}: the loss is {value} (lower --lr)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running += value
        if step % args.log_every == 0:
            # Held-out PSNR on a subset; its time is not counted as training time.
            t0 = time.monotonic()
            elapsed = t0 - start
            held_db = heldout_psnr(codec, held[:EVAL_FRAMES])
            codec.train()
            mean, running = running / args.log_every, 0.0
            curve.append(
                {
                    "step": step,
                    "seconds": round(elapsed, 1),
                    "loss": round(mean, 5),
                    "heldout_psnr_db": round(held_db, 2),
                }
            )
            print(
                f"[codec_train] step {step} {elapsed:.0f}s loss {mean:.4f} "
                f"held-out PSNR {held_db:.2f} dB",
                file=sys.stderr,
            )
            start += time.monotonic() - t0
    seconds = time.monotonic() - start
    codec.set_latent_stats(*latent_stats(codec, fit[:2048]))
    report = {
        **codec.architecture(),
        "spatial_factor": codec.spatial_factor,
        "temporal_factor": codec.temporal_factor,
        "frame_size": list(fit.shape[-2:]),
        "heldout_psnr_db": round(heldout_psnr(codec, held), 3),
        "initial_heldout_psnr_db": round(initial, 3),
        "train_psnr_db": round(heldout_psnr(codec, fit[: len(held)]), 3),
        "steps": step,
        "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "loss": args.loss,
        "edge_weight": args.edge_weight,
        "train_frames": len(fit),
        "heldout_frames": len(held),
        "parameters": sum(p.numel() for p in codec.parameters()),
        "seed": args.seed,
        "curve": curve,
    }
    codec.save(args.out, metadata={"heldout_psnr_db": report["heldout_psnr_db"], "steps": step})
    return report


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, train and write the codec folder and its report; returns the report.

    Raises:
        ValueError: a bad flag or input (one line, naming the flag or file).
    """
    args = _parser().parse_args(argv)
    _check_args(args)
    torch.set_num_threads(args.threads)
    data = read_frames(args.data, max_frames=args.max_frames)
    heldout = (
        None if args.heldout is None else read_frames(args.heldout, max_frames=args.max_frames)
    )
    fit, held = split_frames(data, heldout, args.heldout_fraction)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    report = train_codec(args, fit, held)
    skipped = data.skipped + ([] if heldout is None else heldout.skipped)
    report |= {"skipped_videos": len(skipped), "skipped": skipped[:100]}
    write_json_atomic(out / REPORT_NAME, report)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point (``python -m training.codec_train``)."""
    try:
        report = run(argv)
    except (FrameSourceError, CodecFolderError, ValueError, OSError) as err:
        print(f"{PROG}: error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except TrainingDiverged as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    keep = (
        "heldout_psnr_db",
        "initial_heldout_psnr_db",
        "steps",
        "train_seconds",
        "skipped_videos",
    )
    print(json.dumps({k: report[k] for k in keep}))


if __name__ == "__main__":
    main()
