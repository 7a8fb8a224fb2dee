"""``genprop-eval --benchmark editverse``: EditVerseBench's edited-first-frame track (first-frame
edit propagation; Ju et al., "EditVerse: Unifying Image and Video Editing and Generation with
In-Context Learning", arXiv 2509.20360; data at huggingface.co/datasets/sooyek/EditVerseBench,
evaluation code at github.com/adobe-research/EditVerse).

Data folder (``--data DIR``): the benchmark folder holding ``test.json`` (``DIR`` or
``DIR/EditVerseBench``), with the source videos downloaded into ``videos/`` by the benchmark's
``download_source_video.py``. ``test.json`` maps an id to an entry whose ``<video1>`` is the source
video and ``target_prompt`` describes the edited video. The entries of this track are those with
a file under ``edited_first_frame/`` (an image, or a video whose first frame is the edit); the other
entries belong to other tracks and are left out (the report counts them). An edited frame of
another size than the source is resized to it.

Methods' outputs (``--method NAME=DIR``): EditVerse's layout ``DIR/ID/generate.mp4``, or
``DIR/ID.mp4``, or ``DIR/ID/`` frames. Baselines, from the source video and the edited first frame:
``paste_first_frame`` and ``flow_propagation`` (:mod:`evaluation.baselines`). ``--model`` runs
GenProp's edit task from the edited first frame with ``target_prompt`` as the prompt.

Metrics, as EditVerse's ``automatic_evaluation`` computes them, over every frame of the output
(a source longer than :data:`MAX_FRAMES` is skipped and counted), with the CLIP model of
``--clip`` (EditVerse uses
``openai/clip-vit-large-patch14``):

- ``CLIP_text`` ("Text Alignment: Frame"): per frame, CLIP's logit scale (100 for real CLIP) times
  the cosine between the frame's and ``target_prompt``'s projected embeddings; mean over frames.
- ``CLIP_temporal`` ("Temporal Consistency: CLIP"): the cosine between the unprojected image
  embeddings (the vision tower's pooled output) of consecutive frames, clamped at 0, averaged over
  pairs, times 100 as EditVerse's table reports it.

Both are higher-is-better. EditVerse's other scores are not computed here: the VLM editing score
needs a GPT judge with the user's API key, and ViCLIP video-text alignment, PickScore and DINO
consistency need their own models.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from contracts.jsonfile import read_json_object
from evaluation.baselines import flow_propagation, paste_first_frame
from evaluation.boards.common import (
    BoardError,
    GenPropRun,
    prepare_run_dir,
    select_baselines,
    write_board_report,
)
from evaluation.boards.outputs import OutputError, cached_frames, read_output
from evaluation.clip_score import CLIP_BATCH, ClipScorer, ClipUnavailableError
from genprop.inference.video_io import (
    FRAME_SUFFIXES,
    VideoReadError,
    open_video,
    read_image,
    read_video,
)

BENCHMARK = "EditVerseBench (edited first frame)"
INDEX = "test.json"
EDIT_FOLDER = "edited_first_frame"
EDIT_PREFIX = f"{EDIT_FOLDER}/"  # test.json paths of the track's edited frames
SOURCE_KEY = "<video1>"
BASELINES = ("paste_first_frame", "flow_propagation")
GENPROP = "genprop"
TASK = "edit"
COLUMNS = ("CLIP_text", "CLIP_temporal")
MAX_FRAMES = 300  # frames read per video: bounds memory (about 1.9 GB of 1080p frames)
FRAMES_NOTE = (
    "EditVerseBench, edited-first-frame track: every frame of the output (a source of more "
    "than 300 frames is skipped and counted), as "
    "EditVerse's evaluation; CLIP_text is CLIP's logit scale times the frame-prompt cosine, "
    "CLIP_temporal 100 x the cosine of consecutive frames' CLIP embeddings (both higher is better)."
)


@dataclass
class EditEntry:
    """One entry of the track: ids and files from ``test.json``."""

    id: str
    source: Path
    edited: Path
    prompt: str


@dataclass
class EditVideo:
    """A loaded entry: the ``(T, H, W, 3)`` uint8 source and the ``(H, W, 3)`` edited frame."""

    id: str
    source: np.ndarray
    first: np.ndarray
    prompt: str


def _root(data: Path) -> Path:
    for root in (data, data / "EditVerseBench"):
        if (root / INDEX).is_file():
            return root
    raise BoardError(f"{data}: no {INDEX}; --data must be the EditVerseBench folder holding it")


def _inside(root: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where} must be a file path inside the benchmark folder")
    path = (root / value).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{where} {value!r} points outside {root}")
    return path


def list_entries(data: Path) -> tuple[list[EditEntry], int, list[str]]:
    """The track's entries of ``test.json``, the number of other-track entries, and problems
    (entries of the track that cannot be used: skipped and listed, not an error)."""
    root = _root(data)
    index = read_json_object(root / INDEX, what="JSON file", error=BoardError)
    entries, others, problems = [], 0, []
    for key, entry in index.items():
        if not isinstance(entry, dict):
            problems.append(f"{root / INDEX}: entry {key!r} skipped, expected a JSON object")
            continue
        edited = [v for v in entry.values() if isinstance(v, str) and v.startswith(EDIT_PREFIX)]
        if not edited:
            others += 1
            continue
        try:
            prompt = entry.get("target_prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError("field 'target_prompt' must be a non-empty string")
            source = _inside(root, entry.get(SOURCE_KEY), f"field {SOURCE_KEY!r}")
            edit = _inside(root, edited[0], f"the {EDIT_FOLDER} file")
            for path in (source, edit):
                if not path.exists():
                    raise ValueError(f"{path} is missing")
        except ValueError as e:
            problems.append(f"{root / INDEX}: entry {key!r} skipped, {e}")
            continue
        entries.append(EditEntry(str(key), source, edit, prompt))
    return entries, others, problems


def load_entry(entry: EditEntry) -> EditVideo:
    """Read the source video and the edited first frame (resized to the source's size).

    Raises:
        ValueError: a source longer than :data:`MAX_FRAMES` (skipped and counted, not cut).
    """
    count = open_video(entry.source).count
    if count > MAX_FRAMES:
        raise ValueError(
            f"{entry.source}: {count} frames, more than the {MAX_FRAMES} this board reads per video"
        )
    source = read_video(entry.source).frames
    if entry.edited.suffix.lower() in FRAME_SUFFIXES:
        first = read_image(entry.edited)
    else:
        first = read_video(entry.edited, max_frames=1).frames[0]
    H, W = source.shape[1:3]
    if first.shape[:2] != (H, W):
        first = cv2.resize(first, (W, H), interpolation=cv2.INTER_AREA)
    return EditVideo(entry.id, source, first, entry.prompt)


def run_baseline(name: str, video: EditVideo) -> np.ndarray:
    """Baseline ``name`` (``paste_first_frame`` or ``flow_propagation``) on one entry."""
    if name == "paste_first_frame":
        return paste_first_frame(video.source, video.first)
    return flow_propagation(video.source, video.first)


def temporal_consistency(embeddings: torch.Tensor) -> float:
    """100 x the mean over consecutive rows of ``max(0, cosine)`` of ``(T, D)`` embeddings
    (NaN for one frame)."""
    if len(embeddings) < 2:
        return math.nan
    unit = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    cos = (unit[1:] * unit[:-1]).sum(-1).clamp(min=0)
    return 100.0 * float(cos.mean())


@torch.no_grad()
def clip_scores(clip: ClipScorer, frames: np.ndarray, prompt: str) -> dict[str, float]:
    """``CLIP_text`` and ``CLIP_temporal`` of ``(T, H, W, 3)`` uint8 frames (module docs)."""
    model = clip.model
    pooled = []
    for i in range(0, len(frames), CLIP_BATCH):
        pixels = clip.image_processor(images=list(frames[i : i + CLIP_BATCH]), return_tensors="pt")
        out = model.vision_model(pixel_values=pixels["pixel_values"].to(clip.device))
        pooled.append(out.pooler_output)
    pooled_all = torch.cat(pooled)
    images = torch.nn.functional.normalize(model.visual_projection(pooled_all), dim=-1)
    text = clip.text_embedding(prompt)
    scale = float(model.logit_scale.exp())
    return {
        "CLIP_text": scale * float((images @ text).mean()),
        "CLIP_temporal": temporal_consistency(pooled_all),
    }


def method_output(
    name: str, folder: Path, video: EditVideo, baselines: list[str], genprop: GenPropRun | None
) -> np.ndarray:
    """Method ``name``'s output for ``video``: a baseline or GenProp (computed into ``folder``
    once, then reused), or a ``--method`` folder's file."""
    T = len(video.source)
    if name in baselines:
        return cached_frames(folder / video.id, T, lambda: run_baseline(name, video))
    if name == GENPROP and genprop is not None:
        return cached_frames(
            folder / video.id,
            T,
            lambda: (
                genprop.propagate(
                    video.source, video.first, TASK, prompt=video.prompt, desc=video.id
                ).video
            ),
        )
    return read_output(folder, video.id, MAX_FRAMES)


def _load_clip(args: argparse.Namespace, notes: list[str]) -> ClipScorer | None:
    if args.clip is None:
        notes.append("CLIP_text/CLIP_temporal unavailable: no --clip folder given")
    else:
        try:
            return ClipScorer(args.clip, device=getattr(args, "device", "cpu"))
        except ClipUnavailableError as e:
            notes.append(f"CLIP_text/CLIP_temporal unavailable: {e}")
    print(f"genprop-eval: note: {notes[-1]}", file=sys.stderr)
    return None


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Score ``args.methods``, the baselines and GenProp on the track; write the report.

    Returns:
        ``{"json": OUT/metrics.json, "md": OUT/metrics.md}``.
    """
    entries, others, errors = list_entries(args.data)
    baselines = select_baselines(args.baselines, BASELINES)
    genprop = getattr(args, "genprop", None)
    notes = [
        f"{len(entries) + len(errors)} entries of test.json are in the edited-first-frame track; "
        f"{others} entries of other tracks are not scored",
        "EditVerse's VLM editing score (a GPT judge) is not computed",
    ]
    clip = _load_clip(args, notes)
    folders: dict[str, Path] = {n: args.out / "baselines" / n for n in baselines}
    folders |= dict(args.methods)
    if genprop is not None:
        folders[GENPROP] = args.out / GENPROP
        prepare_run_dir(folders[GENPROP], genprop.model_dir, genprop.options)
    per_video: dict[str, dict[str, dict[str, float]]] = {m: {} for m in folders}
    for entry in tqdm(entries, desc="EditVerseBench", unit="video", file=sys.stderr):
        try:
            video = load_entry(entry)
        except (VideoReadError, ValueError) as e:
            errors.append(f"video {entry.id}: skipped, {e}")
            continue
        for name, folder in folders.items():
            try:
                output = method_output(name, folder, video, baselines, genprop)
                per_video[name][video.id] = (
                    clip_scores(clip, output, video.prompt)
                    if clip is not None
                    else dict.fromkeys(COLUMNS, math.nan)
                )
            except (OutputError, VideoReadError, ValueError) as e:
                errors.append(f"{name} on {video.id}: {e}")
    return write_board_report(
        args.out,
        BENCHMARK,
        per_video,
        columns=COLUMNS,
        frames_note=FRAMES_NOTE,
        notes=notes,
        errors=errors,
    )
