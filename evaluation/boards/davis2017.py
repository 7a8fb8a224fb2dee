"""``genprop-eval --benchmark davis2017``: the DAVIS 2017 semi-supervised protocol.

Data (``--data DAVIS``, the official trainval 480p layout)::

    DAVIS/ImageSets/2017/val.txt            one sequence name per line (``--split`` picks the file)
    DAVIS/JPEGImages/480p/<seq>/00000.jpg   the frames
    DAVIS/Annotations/480p/<seq>/00000.png  one id map per frame (palette PNG: 0 background,
                                            k = object k, 255 void)

A method's output (``--method NAME=DIR``) is the DAVIS submission layout: ``DIR/<seq>/<frame>.png``
id maps (palette or greyscale PNGs whose values are object ids), named like the annotations. As in
the official evaluation, only frames 1..n-2 are read; a missing sequence folder or frame, a mask
of another size than the frames, or an id above the sequence's object count is an error (the
official script stops too). An object the method never outputs scores as an empty mask (the
official script stops when the highest id is never output). 255 is void, background, as in the
annotations (the official script would take it for an object id and stop), so the annotations
themselves score 1.

Scoring follows the official ``davis2017-evaluation`` (:mod:`evaluation.boards.davis_metrics`):
the objects are the ids ``1..max`` of frame 0's annotation, J and F are computed per object on
frames 1..n-2, the per-video ``J`` and ``F`` are means over the video's objects and ``J&F`` their
mean; the means row is the official global table, whose ``J-Mean`` and ``F-Mean`` average every
object of every sequence, with ``J&F-Mean = (J-Mean + F-Mean) / 2``.

Methods computed here (written as palette PNGs under ``OUT/``, then scored like any method):

- ``genprop`` (``--model``): the tracking task. Frame 0 with each object painted in a colour of
  the colour-fill training recipe (red, green, blue, yellow, purple, cyan, in id order) is
  propagated with the prompt ``"track colored regions"``; object k of frame t is where the output
  is within the tracking tolerance of colour k (:func:`evaluation.tracking.tracked_region`).
  Objects beyond the sixth are not painted and score as empty masks (said in the notes).
- ``flow_propagation`` (baseline): each object's frame-0 mask carried along the chained dense
  optical flow of the original video, as :func:`evaluation.baselines.flow_propagation` carries an
  edit region; a pixel takes the object whose warped mask is largest there (background if none).
- ``paste_first_frame`` (baseline): frame 0's annotation on every frame.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from contracts.frames import FrameError, image_size
from contracts.tasks import TRACKING_PROMPT
from datagen.recipes.color_fill import COLOURS
from evaluation.baselines import frame0_coordinates
from evaluation.boards.common import (
    BoardError,
    GenPropRun,
    method_video_dir,
    prepare_run_dir,
    select_baselines,
    write_board_report,
)
from evaluation.boards.davis_metrics import score_objects
from evaluation.tracking import tracked_region
from genprop.inference.video_io import MAX_DECODE_PIXELS, VideoReadError, read_image

NAME = "davis2017"
RESOLUTION = "480p"
IMAGESETS = Path("ImageSets") / "2017"
VOID_ID = 255
BASELINES = ("flow_propagation", "paste_first_frame")
GENPROP = "genprop"
TRACK_COLOURS: tuple[tuple[int, int, int], ...] = tuple(COLOURS.values())  # red first
MASK_MODES = ("P", "L")
SEQUENCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
FRAMES_NOTE = (
    "DAVIS 2017 semi-supervised protocol: frame 0's annotation is given, J and F are scored per "
    "object on frames 1..n-2 (the official evaluation drops the first and the last frame). Per "
    "video: the mean over its objects. Mean row: the official global J-Mean and F-Mean (mean "
    "over every object of every sequence; n: objects), J&F-Mean = (J-Mean + F-Mean) / 2. Higher "
    "is better except the decays."
)
VIDEO_COLUMNS = ("J&F", "J", "F")
MEAN_KEYS = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
MEAN_COLUMNS = ("J&F-Mean", *MEAN_KEYS)


@dataclass(frozen=True)
class Sequence:
    """One sequence's files: ``frames`` and ``masks`` sorted, one annotation per frame."""

    name: str
    frames: list[Path]
    masks: list[Path]

    @property
    def stems(self) -> list[str]:
        """Frame names without extension (``00000``, ...), the names method PNGs must have."""
        return [m.stem for m in self.masks]


def list_sequences(root: Path, split: str) -> list[str]:
    """Sequence names of ``root/ImageSets/2017/<split>.txt`` (blank lines skipped)."""
    for sub in (Path("JPEGImages") / RESOLUTION, Path("Annotations") / RESOLUTION):
        if not (root / sub).is_dir():
            raise BoardError(f"{root / sub}: missing; --data must be a DAVIS 2017 folder")
    listing = root / IMAGESETS / f"{split}.txt"
    if not listing.is_file():
        raise BoardError(f"{listing}: missing; --split {split} needs this list of sequences")
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BoardError(f"{listing}: not a readable text file ({e})") from None
    names = []
    for i, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            continue
        if not SEQUENCE_NAME.fullmatch(name):
            raise BoardError(f"{listing}: line {i} {name!r} is not a sequence folder name")
        names.append(name)
    if not names:
        raise BoardError(f"{listing}: lists no sequence")
    return list(dict.fromkeys(names))


def sequence_files(root: Path, name: str) -> Sequence:
    """The frames and annotations of sequence ``name``; every frame needs its annotation."""
    frame_dir = root / "JPEGImages" / RESOLUTION / name
    mask_dir = root / "Annotations" / RESOLUTION / name
    frames = sorted(frame_dir.glob("*.jpg")) if frame_dir.is_dir() else []
    if not frames:
        raise BoardError(f"{frame_dir}: no .jpg frames for sequence {name!r} of the split list")
    masks = sorted(mask_dir.glob("*.png")) if mask_dir.is_dir() else []
    if [m.stem for m in masks] != [f.stem for f in frames]:
        raise BoardError(
            f"{mask_dir}: {len(masks)} annotation PNGs for {len(frames)} frames; scoring needs "
            f"one per frame, named like the frames ({frames[0].stem}.png, ...)"
        )
    return Sequence(name, frames, masks)


def frame_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a frame as displayed (EXIF orientation applied, as
    :func:`read_image` decodes it), from its header, bounded by ``MAX_DECODE_PIXELS``."""
    try:
        size = image_size(path)
    except FrameError as e:
        raise BoardError(str(e)) from None
    if size[0] * size[1] > MAX_DECODE_PIXELS:
        raise BoardError(f"{path}: image of {size[0]}x{size[1]} is too large")
    return size


def read_ids(path: Path, size: tuple[int, int], what: str) -> np.ndarray:
    """``(H, W)`` uint8 object ids of one palette/greyscale PNG of ``size`` ``(width, height)``;
    the size is checked before the pixels are decoded."""
    if not path.is_file():
        raise BoardError(f"{path}: missing; {what} needs one PNG per scored frame")
    try:
        with Image.open(path) as im:
            if im.size != size:
                raise BoardError(
                    f"{path}: {what} mask is {im.width}x{im.height}, expected {size[0]}x{size[1]} "
                    "like the sequence's frames"
                )
            if im.mode not in MASK_MODES:
                raise BoardError(
                    f"{path}: {what} mask has mode {im.mode!r}; expected a palette (P) or "
                    "greyscale (L) PNG whose values are object ids"
                )
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, BoardError):
            raise
        raise BoardError(f"{path}: not a readable PNG ({e})") from None


def read_annotations(seq: Sequence, size: tuple[int, int]) -> np.ndarray:
    """``(T, H, W)`` uint8 ground-truth ids, void (255) turned into background as the official
    reader does."""
    gt = np.stack([read_ids(m, size, "the annotation") for m in seq.masks])
    gt[gt == VOID_ID] = 0
    return gt


def read_video(seq: Sequence, size: tuple[int, int]) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames, every one of ``size``."""
    frames = []
    for path in seq.frames:
        try:
            frame = read_image(path)
        except VideoReadError as e:
            raise BoardError(str(e)) from None
        if frame.shape[1::-1] != size:
            raise BoardError(
                f"{path}: frame is {frame.shape[1]}x{frame.shape[0]}, expected {size[0]}x{size[1]}"
                f" like {seq.frames[0].name}"
            )
        frames.append(frame)
    return np.stack(frames)


def read_method_masks(
    name: str, folder: Path, seq: Sequence, size: tuple[int, int], n_objects: int
) -> np.ndarray:
    """``(T-2, H, W)`` uint8 ids of method ``name`` on frames 1..n-2 of ``seq``."""
    out = []
    for stem in seq.stems[1:-1]:
        path = folder / f"{stem}.png"
        ids = read_ids(path, size, f"--method {name}")
        ids[ids == VOID_ID] = 0  # void, as the annotations' (a copy of them scores 1)
        top = int(ids.max(initial=0))
        if top > n_objects:
            raise BoardError(
                f"{path}: object id {top}, but sequence {seq.name!r} has {n_objects} objects "
                f"(ids 1..{n_objects} of its first annotation)"
            )
        out.append(ids)
    return np.stack(out)


def palette() -> list[int]:
    """The 256-colour palette of DAVIS annotations (the PASCAL VOC colour map), flattened RGB."""
    colours = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return colours


def write_id_maps(folder: Path, stems: list[str], ids: np.ndarray) -> None:
    """Write ``(T, H, W)`` uint8 ids as palette PNGs ``folder/<stem>.png`` (DAVIS layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = palette()
    for stem, frame in zip(stems, ids):
        im = Image.fromarray(frame.astype(np.uint8), mode="P")
        im.putpalette(colours)
        im.save(folder / f"{stem}.png")


def flow_labels(video: np.ndarray, first_ids: np.ndarray, n_objects: int) -> np.ndarray:
    """``(T, H, W)`` uint8: each object of ``first_ids`` carried along the chained optical flow
    of ``(T, H, W, 3)`` ``video``; a pixel takes the object (or background) whose warped mask is
    largest there, so a pixel warped from outside the frame is background."""
    coords = frame0_coordinates(video)
    onehot = [(first_ids == k).astype(np.float32) for k in range(n_objects + 1)]
    out = np.empty(video.shape[:3], np.uint8)
    out[0] = first_ids
    for t in range(1, len(video)):
        mx, my = coords[t, ..., 0], coords[t, ..., 1]
        warped = [
            cv2.remap(m, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            for m in onehot
        ]
        out[t] = np.argmax(np.stack(warped), axis=0)
    return out


def colour_objects(frame: np.ndarray, ids: np.ndarray, n_objects: int) -> np.ndarray:
    """``frame`` with object k painted ``TRACK_COLOURS[k-1]`` (the tracking task's first frame);
    objects beyond the palette stay unpainted."""
    out = frame.copy()
    for k in range(1, min(n_objects, len(TRACK_COLOURS)) + 1):
        out[ids == k] = TRACK_COLOURS[k - 1]
    return out


def labels_from_colours(output: np.ndarray, video: np.ndarray, n_objects: int) -> np.ndarray:
    """``(T, H, W)`` uint8 ids read out of a tracking ``output``: object k where the output shows
    colour k and the input did not (the colours are far apart, so a pixel matches at most one)."""
    ids = np.zeros(output.shape[:3], np.uint8)
    for k in range(1, min(n_objects, len(TRACK_COLOURS)) + 1):
        ids[tracked_region(output, video, color=TRACK_COLOURS[k - 1])] = k
    return ids


def genprop_labels(
    run: GenPropRun,
    folder: Path,
    seq: Sequence,
    size: tuple[int, int],
    gt0: np.ndarray,
    n: int,
    video: np.ndarray | None = None,
) -> np.ndarray:
    """GenProp's ids on frames 1..n-2 of ``seq``: read back from ``folder`` when a previous run
    of the same export and options wrote them, else computed (from ``video`` when it is already
    decoded) and written there."""
    if all((folder / f"{s}.png").is_file() for s in seq.stems):
        return read_method_masks(GENPROP, folder, seq, size, n)
    video = read_video(seq, size) if video is None else video
    result = run.propagate(
        video, colour_objects(video[0], gt0, n), "tracking", prompt=TRACKING_PROMPT, desc=seq.name
    )
    ids = labels_from_colours(result.video, video, n)
    ids[0] = gt0
    write_id_maps(folder, seq.stems, ids)
    return ids[1:-1]


def _mean_table(objects: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    averages = {}
    for method, rows in objects.items():
        avg = {k: float(np.mean([r[k] for r in rows])) if rows else math.nan for k in MEAN_KEYS}
        avg["J&F-Mean"] = (avg["J-Mean"] + avg["F-Mean"]) / 2
        averages[method] = {"n": float(len(rows)), **{k: avg[k] for k in MEAN_COLUMNS}}
    return averages


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Score every method on the DAVIS 2017 split; writes ``metrics.json`` and ``metrics.md``."""
    root: Path = args.data
    split = getattr(args, "split", None) or "val"
    names = list_sequences(root, split)
    sequences = [sequence_files(root, n) for n in names]
    methods: list[tuple[str, Path]] = list(args.methods)
    for name, folder in methods:  # every output present before hours of computing
        for seq in sequences:
            method_video_dir(name, folder, seq.name)
    baselines = select_baselines(args.baselines, BASELINES)
    genprop: GenPropRun | None = getattr(args, "genprop", None)
    if not (methods or baselines or genprop is not None):
        raise BoardError("nothing to score; give --method, --model or --baselines")
    order = [*([GENPROP] if genprop is not None else []), *baselines, *(n for n, _ in methods)]
    if genprop is not None:
        prepare_run_dir(args.out / GENPROP, genprop.model_dir, genprop.options)
    per_video: dict[str, dict[str, dict[str, float]]] = {m: {} for m in order}
    per_object: dict[str, dict[str, dict[str, float]]] = {m: {} for m in order}
    objects: dict[str, list[dict[str, float]]] = {m: [] for m in order}
    errors: list[str] = []
    unpainted: list[str] = []
    # No bar when stderr is not a terminal (logs, tests): a user error stays one line.
    for seq in tqdm(sequences, desc=NAME, unit="video", file=sys.stderr, disable=None):
        size = frame_size(seq.frames[0])
        gt = read_annotations(seq, size)
        n = int(gt[0].max())
        if n == 0 or len(seq.frames) < 3:
            errors.append(
                f"{seq.name}: skipped, "
                + ("no object in its first annotation" if n == 0 else "fewer than 3 frames")
            )
            continue
        if genprop is not None and n > len(TRACK_COLOURS):
            unpainted.append(f"{seq.name} ({n} objects)")
        video = read_video(seq, size) if "flow_propagation" in baselines else None
        for method in order:
            if method == GENPROP:
                try:
                    folder = args.out / GENPROP / seq.name
                    pred = genprop_labels(genprop, folder, seq, size, gt[0], n, video)
                except (ValueError, RuntimeError) as e:  # e.g. out of memory on one long video
                    errors.append(f"{GENPROP} on {seq.name}: skipped, {e}")
                    continue
            elif method in BASELINES:
                ids = (
                    flow_labels(video, gt[0], n)
                    if method == "flow_propagation"
                    else np.repeat(gt[:1], len(gt), axis=0)
                )
                write_id_maps(args.out / "baselines" / method / seq.name, seq.stems, ids)
                pred = ids[1:-1]
            else:
                folder = dict(methods)[method] / seq.name
                pred = read_method_masks(method, folder, seq, size, n)
            rows = score_objects(gt[1:-1], pred, n)
            objects[method] += rows
            for k, row in enumerate(rows, 1):
                per_object[method][f"{seq.name}_{k}"] = row
            j = float(np.mean([r["J-Mean"] for r in rows]))
            f = float(np.mean([r["F-Mean"] for r in rows]))
            per_video[method][seq.name] = {"J&F": (j + f) / 2, "J": j, "F": f}
    notes = [f"split {split!r} of {root}: {len(sequences)} sequence(s)"]
    if genprop is not None and getattr(args, "mask_threshold", None) is not None:
        notes.append("--mask-threshold is not used: objects are read from the output's colours")
    if unpainted:
        notes.append(
            f"genprop paints at most {len(TRACK_COLOURS)} objects; the others score as empty "
            "masks in " + ", ".join(unpainted)
        )
    return write_board_report(
        args.out,
        NAME,
        per_video,
        averages=_mean_table(objects),
        columns=VIDEO_COLUMNS,
        mean_columns=("n", *MEAN_COLUMNS),
        frames_note=FRAMES_NOTE,
        notes=notes,
        errors=errors,
        extra={"split": split, "per_object": per_object},
    )
