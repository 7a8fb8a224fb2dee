"""``genprop-eval --benchmark prove-m``: video object removal on PROVE-M (80 real videos with
ground truth; Li et al., "PROVE: A Perceptual RemOVal cohErence Benchmark for Visual Media",
ACM MM 2026, arXiv 2605.14534; data at huggingface.co/datasets/HigherHu/PROVE-Bench, Apache-2.0).

Data folder (``--data DIR``): three sub-folders pairing files by name, as the released scorer
(github.com/xiaomi-research/prove, ``utils/media_utils.py``) pairs them; each video is an mp4 (or a
folder of frames):

```
DIR/inputs/ID.mp4   the videos with the object (also accepted: input/, videos/, raw_videos/)
DIR/masks/ID.mp4    the object masks, white = remove (also accepted: mask/)
DIR/gt/ID.mp4       the clean ground truth (also accepted: gts/, GT/, ground_truth/)
```

Methods' outputs (``--method NAME=DIR``): ``DIR/ID.mp4`` (the scorer's own layout), or
``DIR/ID/`` frames. Baselines, from the inputs and masks: ``identity`` (the input) and
``mask_inpaint`` (OpenCV Telea inpainting of every frame's mask, :mod:`evaluation.baselines`).
``--model`` runs GenProp's removal task from the first frame inpainted the same way.

Metrics, per video, then the mean over videos:

- ``RC-S`` (higher is better) and ``RC-T`` (lower is better): PROVE's removal-coherence metrics,
  exactly as the released scorer computes them (:mod:`evaluation.removal_coherence`) with the
  DINOv2 model of ``--dinov2`` (PROVE uses ``facebook/dinov2-giant``). They need no ground truth.
- ``PSNR``, ``SSIM`` (higher is better) and ``LPIPS`` (lower is better) against the ground truth.
  The released code does not include these; we compute them per frame on the full frame, over
  the same frames as RC-S, at the dataset's resolution, and average over frames: PSNR on 0..255
  values (capped at 100 dB), SSIM as :func:`evaluation.metrics.ssim` (scikit-image, 7x7 window),
  LPIPS v0.1 with the network of ``--lpips`` (AlexNet unless the folder holds VGG weights). The
  paper's exact protocol for these three (frame subset, resolution, LPIPS network) is not
  published in code, so published numbers may differ by protocol, not only by method.

Frames: the first 81 of each video (the scorer's limit), up to the shortest of input, mask, ground
truth and output; an output of another size is resized (bilinear) to the masks' size, as the
scorer does. Without ``--dinov2`` or ``--lpips`` those metrics are reported as unavailable (a note
says why) and PSNR/SSIM are still computed.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from evaluation.baselines import INPAINT_RADIUS, mask_inpaint
from evaluation.boards.common import (
    BoardError,
    GenPropRun,
    prepare_run_dir,
    select_baselines,
    write_board_report,
)
from evaluation.boards.outputs import OutputError, cached_frames, read_output
from evaluation.dino import DinoFeatures, DinoUnavailableError
from evaluation.lpips import Lpips, LpipsUnavailableError, load_lpips, lpips_video
from evaluation.metrics import psnr, ssim
from evaluation.removal_coherence import MAX_FRAMES, rc_s, rc_t
from genprop.inference.video_io import VIDEO_SUFFIXES, VideoReadError, read_video

BENCHMARK = "PROVE-M"
BASELINES = ("identity", "mask_inpaint")
GENPROP = "genprop"
TASK = "removal"
FOLDERS = {
    "inputs": ("inputs", "input", "videos", "raw_videos"),
    "masks": ("masks", "mask"),
    "gt": ("gt", "gts", "GT", "ground_truth"),
}
COLUMNS = ("PSNR", "SSIM", "LPIPS", "RC-S", "RC-T")
MASK_LEVEL = 127  # grey values above this are the object (the scorer's binarisation)
FRAMES_NOTE = (
    "PROVE-M: the first 81 frames of each video, full frame at the masks' resolution. PSNR, SSIM "
    "and LPIPS against the ground truth (higher, higher, lower is better); RC-S (higher is "
    "better) and RC-T (lower is better) as PROVE's released scorer, DINOv2 features in the masks."
)


@dataclass
class ProveVideo:
    """One PROVE-M video: ``(T, H, W, 3)`` uint8 input, mask frames and ground truth."""

    id: str
    input: np.ndarray
    masks: np.ndarray  # (T, H, W, 3) uint8 as decoded; the metrics read them as the scorer does
    gt: np.ndarray

    @property
    def object_mask(self) -> np.ndarray:
        """``(T, H, W)`` bool: the object to remove."""
        return self.masks.max(axis=-1) > MASK_LEVEL


def _subfolder(data: Path, role: str) -> Path:
    for name in FOLDERS[role]:
        if (data / name).is_dir():
            return data / name
    raise BoardError(
        f"{data}: no {role} folder; expected one of {', '.join(n + '/' for n in FOLDERS[role])}"
    )


def _items(folder: Path) -> dict[str, Path]:
    """``{ID: path}`` of the videos (containers or frame folders) in ``folder``."""
    items = {}
    for p in sorted(folder.iterdir()):
        if p.is_dir() or (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES):
            items.setdefault(p.stem if p.is_file() else p.name, p)
    return items


def list_videos(data: Path) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """``({ID: {"inputs": path, "masks": path, "gt": path}}, problems)`` for the videos of
    ``data``; a video missing its mask or ground truth is a problem (skipped), not an error."""
    folders = {role: _subfolder(data, role) for role in FOLDERS}
    found = {role: _items(folder) for role, folder in folders.items()}
    if not found["inputs"]:
        raise BoardError(f"{folders['inputs']}: no videos (expected ID.mp4 or ID/ frame folders)")
    videos, problems = {}, []
    for vid, path in found["inputs"].items():
        missing = [role for role in ("masks", "gt") if vid not in found[role]]
        if missing:
            where = " and ".join(str(folders[r] / f"{vid}.mp4") for r in missing)
            problems.append(f"video {vid}: skipped, no {where}")
            continue
        videos[vid] = {"inputs": path, "masks": found["masks"][vid], "gt": found["gt"][vid]}
    return videos, problems


def load_video(vid: str, paths: dict[str, Path]) -> ProveVideo:
    """Read one video's input, masks and ground truth (at most 81 frames each, the shortest
    length); raises ``ValueError`` naming the file when one is unreadable or of another size."""
    parts = {role: read_video(p, max_frames=MAX_FRAMES).frames for role, p in paths.items()}
    T = min(len(v) for v in parts.values())
    H, W = parts["masks"].shape[1:3]
    for role in ("inputs", "gt"):
        if parts[role].shape[1:3] != (H, W):
            h, w = parts[role].shape[1:3]
            raise ValueError(f"{paths[role]}: frames of {w}x{h}, the masks are {W}x{H}")
    return ProveVideo(vid, parts["inputs"][:T], parts["masks"][:T], parts["gt"][:T])


def inpaint_first(video: ProveVideo) -> np.ndarray:
    """Frame 0 with its object inpainted by OpenCV (Telea): the removal edit GenProp starts from."""
    mask = video.object_mask[0].astype(np.uint8)
    return cv2.inpaint(video.input[0], mask, INPAINT_RADIUS, cv2.INPAINT_TELEA)


def run_baseline(name: str, video: ProveVideo) -> np.ndarray:
    """Baseline ``name`` (``identity`` or ``mask_inpaint``) on one video."""
    if name == "identity":
        return video.input.copy()
    return mask_inpaint(video.input, inpaint_first(video), video.object_mask, TASK)


def _fit(output: np.ndarray, video: ProveVideo) -> np.ndarray:
    """The output's first frames, resized (bilinear) to the masks' size as the scorer does."""
    H, W = video.masks.shape[1:3]
    output = output[: len(video.masks)]
    if output.shape[1:3] == (H, W):
        return output
    return np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) for f in output])


def score_video(
    output: np.ndarray,
    video: ProveVideo,
    *,
    lpips: Lpips | None = None,
    dino: DinoFeatures | None = None,
) -> dict[str, float]:
    """PSNR, SSIM, LPIPS, RC-S and RC-T of one output (NaN where a model is missing)."""
    output = _fit(output, video)
    T = len(output)
    gt, masks = video.gt[:T], video.masks[:T]
    return {
        "PSNR": psnr(output, gt),
        "SSIM": ssim(output, gt),
        "LPIPS": math.nan if lpips is None else lpips_video(lpips, output, gt),
        "RC-S": math.nan if dino is None else rc_s(output, masks, dino),
        "RC-T": math.nan if dino is None else rc_t(output, masks, dino),
    }


def method_output(
    name: str, folder: Path, video: ProveVideo, baselines: list[str], genprop: GenPropRun | None
) -> np.ndarray:
    """Method ``name``'s output for ``video``: a baseline or GenProp (computed into ``folder``
    once, then reused), or a ``--method`` folder's file."""
    if name in baselines:
        return cached_frames(folder / video.id, len(video.input), lambda: run_baseline(name, video))
    if name == GENPROP and genprop is not None:
        first = inpaint_first(video)
        return cached_frames(
            folder / video.id,
            len(video.input),
            lambda: genprop.propagate(video.input, first, TASK, prompt=None, desc=video.id).video,
        )
    return read_output(folder, video.id, MAX_FRAMES)


def _feature_models(
    args: argparse.Namespace, notes: list[str]
) -> tuple[Lpips | None, DinoFeatures | None]:
    device = getattr(args, "device", "cpu")
    lpips = dino = None
    if args.lpips is None:
        notes.append("LPIPS unavailable: no --lpips folder given")
    else:
        try:
            lpips = load_lpips(args.lpips, device=device)
        except LpipsUnavailableError as e:
            notes.append(f"LPIPS unavailable: {e}")
    if args.dinov2 is None:
        notes.append("RC-S/RC-T unavailable: no --dinov2 folder given")
    else:
        try:
            dino = DinoFeatures(args.dinov2, device=device)
        except DinoUnavailableError as e:
            notes.append(f"RC-S/RC-T unavailable: {e}")
    for note in notes:
        print(f"genprop-eval: note: {note}", file=sys.stderr)
    return lpips, dino


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Score ``args.methods``, the baselines and GenProp on PROVE-M; write the report.

    Returns:
        ``{"json": OUT/metrics.json, "md": OUT/metrics.md}``.
    """
    videos, errors = list_videos(args.data)
    baselines = select_baselines(args.baselines, BASELINES)
    genprop = getattr(args, "genprop", None)
    notes: list[str] = []
    lpips, dino = _feature_models(args, notes)
    folders: dict[str, Path] = {n: args.out / "baselines" / n for n in baselines}
    folders |= dict(args.methods)
    if genprop is not None:
        folders[GENPROP] = args.out / GENPROP
        prepare_run_dir(folders[GENPROP], genprop.model_dir, genprop.options)
    per_video: dict[str, dict[str, dict[str, float]]] = {m: {} for m in folders}
    for vid, paths in tqdm(videos.items(), desc=BENCHMARK, unit="video", file=sys.stderr):
        try:
            video = load_video(vid, paths)
        except (VideoReadError, ValueError) as e:
            errors.append(f"video {vid}: skipped, {e}")
            continue
        for name, folder in folders.items():
            try:
                output = method_output(name, folder, video, baselines, genprop)
                per_video[name][vid] = score_video(output, video, lpips=lpips, dino=dino)
            except (OutputError, VideoReadError, ValueError) as e:
                errors.append(f"{name} on {vid}: {e}")
    return write_board_report(
        args.out,
        BENCHMARK,
        per_video,
        columns=COLUMNS,
        frames_note=FRAMES_NOTE,
        notes=notes,
        errors=errors,
    )
