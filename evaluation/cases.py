"""Load evaluation cases (the folder layout of :mod:`contracts.cases`) and a method's outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.cases import INDEX, INDEX_FIELDS, INDEX_VERSION, CaseFolder, output_masks
from contracts.jsonfile import read_json_object
from contracts.tasks import TASKS
from genprop.inference.video_io import (
    VideoReadError,
    list_frame_files,
    read_image,
    read_mask_dir,
    read_video,
)


class CaseError(ValueError):
    """A case folder (or a method's output for it) is malformed; the message names the file."""


@dataclass(frozen=True)
class CaseRef:
    """One entry of ``index.json``."""

    id: str
    task: str
    dir: Path


@dataclass
class EvalCase:
    """A loaded case. Videos ``(T, H, W, 3)`` uint8, masks ``(T, H, W)`` bool."""

    id: str
    task: str
    prompt: str
    fps: float
    input: np.ndarray
    first: np.ndarray  # (H, W, 3) uint8
    gt: np.ndarray
    edit_mask: np.ndarray
    object_mask: np.ndarray
    effect_mask: np.ndarray | None  # shadow/reflection only; None when the case has none
    meta: dict[str, Any]

    @property
    def object_and_effects(self) -> np.ndarray | None:
        """``(T, H, W)`` bool object ∪ effects, or None when the case has no ``effect_mask/``."""
        return None if self.effect_mask is None else self.object_mask | self.effect_mask


def list_cases(root: str | Path) -> list[CaseRef]:
    """Parse ``root/index.json``; every case dir must stay inside ``root``."""
    root = Path(root).resolve()
    index = root / INDEX
    if not index.is_file():
        raise CaseError(f"{index}: missing; --cases must be a case folder with an index.json")
    data = read_json_object(index, what="JSON file", error=CaseError)
    if data.get("version") != INDEX_VERSION:
        raise CaseError(
            f"{index}: field 'version' must be {INDEX_VERSION}, got {data.get('version')!r}"
        )
    entries = data.get("cases")
    if not isinstance(entries, list):
        raise CaseError(f"{index}: field 'cases' must be a list")
    refs = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in INDEX_FIELDS):
            raise CaseError(f"{index}: cases[{i}] needs string fields 'id', 'task', 'dir'")
        if e["task"] not in TASKS:
            raise CaseError(
                f"{index}: cases[{i}] field 'task' is {e['task']!r}, expected one of {TASKS}"
            )
        case_dir = (root / e["dir"]).resolve()
        if not case_dir.is_relative_to(root):
            raise CaseError(f"{index}: cases[{i}] field 'dir' {e['dir']!r} escapes {root}")
        refs.append(CaseRef(id=e["id"], task=e["task"], dir=case_dir))
    return refs


def _frames(path: Path) -> np.ndarray:
    try:
        return read_video(path).frames
    except VideoReadError as e:
        raise CaseError(str(e)) from e


def _masks(path: Path) -> np.ndarray:
    try:
        return read_mask_dir(path)
    except VideoReadError as e:
        raise CaseError(str(e)) from e


def load_case(ref: CaseRef) -> EvalCase:
    """Read a case folder and check that every part has the same number of frames and size."""
    f = CaseFolder(ref.dir)
    meta = read_json_object(f.meta, what="JSON file", error=CaseError)
    video = _frames(f.input)
    try:
        first = read_image(f.first_frame)
    except VideoReadError as e:
        raise CaseError(str(e)) from e
    parts = {
        "gt": _frames(f.gt),
        "edit_mask": _masks(f.edit_mask),
        "object_mask": _masks(f.object_mask),
    }
    if f.effect_mask.is_dir():
        parts["effect_mask"] = _masks(f.effect_mask)
    T, H, W = video.shape[:3]
    if first.shape[:2] != (H, W):
        raise CaseError(
            f"{f.first_frame}: size {first.shape[1]}x{first.shape[0]}, input is {W}x{H}"
        )
    for name, arr in parts.items():
        if arr.shape[:3] != (T, H, W):
            raise CaseError(
                f"{f.dir / name}: {arr.shape[0]} frames of {arr.shape[2]}x{arr.shape[1]}, "
                f"expected {T} frames of {W}x{H} like input/"
            )
    task = meta.get("task", ref.task)
    if task != ref.task:
        raise CaseError(f"{f.meta}: field 'task' is {task!r} but {INDEX} says {ref.task!r}")
    return EvalCase(
        id=ref.id,
        task=task,
        prompt=str(meta.get("prompt") or ""),
        fps=float(meta.get("fps", 24.0)),
        input=video,
        first=first,
        gt=parts["gt"],
        edit_mask=parts["edit_mask"],
        object_mask=parts["object_mask"],
        effect_mask=parts.get("effect_mask"),
        meta=meta,
    )


def load_method_output(out_dir: str | Path, case: EvalCase) -> tuple[np.ndarray, np.ndarray | None]:
    """A method's ``(T, H, W, 3)`` output for ``case`` and its optional ``(T, H, W)`` float32 mask
    values in [0, 1] (``<id>_masks/``, 8-bit PNGs: a method's binary masks, or GenProp's MPD
    probabilities); the caller thresholds them (0.5: a PNG value of 128 and above).

    Extra frames beyond the case's length are ignored; fewer frames or another size is an error.
    """
    out_dir = Path(out_dir)
    T, H, W = case.input.shape[:3]
    candidates = [out_dir / case.id, out_dir / f"{case.id}.mp4"]
    src = next((p for p in candidates if p.exists()), None)
    if src is None:
        raise CaseError(
            f"{out_dir}: no output for case {case.id!r} "
            f"(expected {case.id}/%05d.png or {case.id}.mp4)"
        )
    try:
        video = read_video(src, max_frames=T).frames
    except VideoReadError as e:
        raise CaseError(str(e)) from e
    if video.shape[:3] != (T, H, W):
        raise CaseError(
            f"{src}: {video.shape[0]} frames of {video.shape[2]}x{video.shape[1]}, "
            f"expected {T} frames of {W}x{H}"
        )
    mask_dir = output_masks(out_dir, case.id)
    masks = load_mask_probabilities(mask_dir, T)
    if masks is not None and masks.shape != (T, H, W):
        raise CaseError(f"{mask_dir}: masks of shape {masks.shape}, expected {(T, H, W)}")
    return video, masks


def load_mask_probabilities(folder: str | Path, frames: int) -> np.ndarray | None:
    """``(T, H, W)`` float32 values in [0, 1] from the first ``frames`` 8-bit PNGs of a mask
    folder (``genprop-eval`` writes GenProp's MPD probabilities to ``<id>_masks/``), or None
    without the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    try:
        files = list_frame_files(folder)[:frames]
        if len(files) < frames:
            raise CaseError(f"{folder}: {len(files)} mask frames, expected {frames}")
        return np.stack([read_image(f, mode="L") for f in files]).astype(np.float32) / 255.0
    except VideoReadError as e:
        raise CaseError(str(e)) from e
