"""Held-out toy-world evaluation cases with exact ground truth, one case set per task.

Written in the case-folder layout of :mod:`contracts.cases` (read by ``genprop-eval`` and the
demo); the toy world adds ``effect_mask/`` (the object's effects, which a VIS dataset does not
annotate; all zero for outpainting).

Tasks (``<id>`` = ``<task>_<nnn>``; the edited object is visible and large on frame 0):

- ``removal``: input = video, gt = clean plate without the object and its effects.
- ``insertion``: input = clean plate, gt = video with the object (which moves on its own).
- ``edit``: gt = the video with the object recoloured (hue rotated, same texture pattern); its
  shadow does not change, so edit_mask = object ∪ reflection.
- ``tracking``: gt = input with the object painted solid red (255, 0, 0) on object_mask;
  edit_mask = object ∪ effects (the region a tracker that follows effects should find, as the
  paper's MPD does), object_mask = object only.
- ``outpainting``: input = video with a border band blanked to black, gt = the video,
  edit_mask = object_mask = band; ``object_ids`` is empty.

Videos come from world ``seed`` (default 10 000, far from training seeds); case ``i`` of task
number ``j`` uses video index ``j * 100000 + i * 1000 + attempt``, so a case does not depend on
how many cases are written.
"""

from __future__ import annotations

import colorsys
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from contracts.cases import INDEX, INDEX_VERSION, CaseFolder, frame_name
from contracts.jobs import write_json_atomic
from contracts.ownership import MARKER, UNKNOWN_CONFIG, owned_folder
from contracts.tasks import TASKS, TRACKING_PROMPT

from .render import RenderedVideo, render_video
from .world import ObjectSpec, WorldConfig, sample_scene
from .writer import stderr_progress, write_png

# Each task's slot in the benchmark, in the order of :data:`contracts.tasks.TASKS` (removal 0,
# edit 2, insertion 1, tracking 3, outpainting 4): a case's video index derives from its task's
# slot, so these slots define the benchmark's cases; cases are written in slot order.
_SLOTS = dict(zip(TASKS, (0, 2, 1, 3, 4), strict=True))
CASE_ORDER = tuple(sorted(TASKS, key=_SLOTS.__getitem__))
TOOL = "genprop-toyworld benchmark"
_MIN_AREA = 0.04  # edited object covers at least 4 % of frame 0
_MIN_PRESENT = 0.75  # ... and is visible on at least 75 % of the frames
_HUE_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta")
_HUE_CENTRES = (0.0, 0.08, 0.16, 0.33, 0.5, 0.62, 0.75, 0.87)


@dataclass(frozen=True)
class Case:
    """One evaluation case in memory (arrays as written; ``(T, H, W[, 3])`` uint8 / bool)."""

    case_id: str
    task: str
    prompt: str
    input: np.ndarray
    gt: np.ndarray
    edit_mask: np.ndarray
    object_mask: np.ndarray
    video_id: str
    object_ids: list[int]
    notes: str
    effect_mask: np.ndarray | None = None  # shadow ∪ reflection of the object; None = no effects


def colour_name(rgb: tuple[int, int, int]) -> str:
    h, _, _ = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    dist = [min(abs(h - c), 1 - abs(h - c)) for c in _HUE_CENTRES]
    return _HUE_NAMES[int(np.argmin(dist))]


def _rotate_hue(rgb: tuple[int, int, int], shift: float) -> tuple[int, int, int]:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    r, g, b = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def pick_object(video: RenderedVideo, *, need_shadow: bool) -> int | None:
    """Index of the largest object that is big on frame 0 and visible most of the time."""
    inst, eff = video.instance_masks, video.effect_masks
    _, t_n, h, w = inst.shape
    anyone = inst[:, 0].any(axis=0)
    best, best_area = None, 0
    for k in range(inst.shape[0]):
        area = int(inst[k, 0].sum())
        present = float(inst[k].reshape(t_n, -1).any(axis=1).mean())
        shadow_seen = int((eff[k, 0] & ~anyone).sum())
        if area < _MIN_AREA * h * w or present < _MIN_PRESENT:
            continue
        if need_shadow and shadow_seen < 0.005 * h * w:
            continue
        if area > best_area:
            best, best_area = k, area
    return best


def _band(rng: np.random.Generator, t_n: int, h: int, w: int) -> tuple[np.ndarray, str]:
    side = str(rng.choice(["left", "right", "top", "bottom", "all"]))
    frac = rng.uniform(0.12, 0.25) if side != "all" else rng.uniform(0.08, 0.14)
    bh, bw = max(1, round(frac * h)), max(1, round(frac * w))
    band = np.zeros((h, w), bool)
    if side in ("left", "all"):
        band[:, :bw] = True
    if side in ("right", "all"):
        band[:, w - bw :] = True
    if side in ("top", "all"):
        band[:bh] = True
    if side in ("bottom", "all"):
        band[h - bh :] = True
    return np.broadcast_to(band, (t_n, h, w)).copy(), f"{side} band of {frac:.0%}"


def build_case(task: str, case_id: str, cfg: WorldConfig, seed: int, index: int) -> Case | None:
    """The case for ``task`` on video ``index`` of world ``seed``, or None if it does not fit."""
    scene = sample_scene(cfg, seed, index)
    video = render_video(scene)
    rng = np.random.default_rng([seed, index, 7])
    frames = video.frames
    if task == "outpainting":
        band, how = _band(rng, *frames.shape[:3])
        inp = np.where(band[..., None], 0, frames).astype(np.uint8)
        return Case(
            case_id,
            task,
            "extend the video beyond its borders",
            inp,
            frames,
            band,
            band,
            scene.video_id,
            [],
            f"outpainting: {how} blanked to black",
        )
    k = pick_object(video, need_shadow=task in ("removal", "insertion"))
    if k is None:
        return None
    obj: ObjectSpec = scene.objects[k]
    inst, eff = video.instance_masks[k], video.effect_masks[k]
    name = obj.shape
    if task == "removal":
        inp, gt, edit = frames, video.clean_plates[k], inst | eff
        prompt = f"remove the {name}"
    elif task == "insertion":
        inp, gt, edit = video.clean_plates[k], frames, inst | eff
        prompt = f"insert a {colour_name(obj.colour)} {name}"
    elif task == "edit":
        shift = float(rng.uniform(0.3, 0.7))
        new = replace(
            obj, colour=_rotate_hue(obj.colour, shift), colour2=_rotate_hue(obj.colour2, shift)
        )
        gt = render_video(scene.with_object(new)).frames
        inp, edit = frames, inst | video.reflection_masks[k]
        prompt = f"make the {name} {colour_name(new.colour)}"
    elif task == "tracking":
        inp, edit = frames, inst | eff
        gt = np.where(inst[..., None], np.array([255, 0, 0], np.uint8), frames).astype(np.uint8)
        prompt = TRACKING_PROMPT
    else:
        raise ValueError(f"unknown task {task!r}, expected one of {TASKS}")
    notes = (
        f"{task} of object {obj.object_id} ({obj.shape}, {obj.texture}, {obj.motion}); "
        f"scene has {len(scene.objects)} objects, reflection={scene.floor_y is not None}"
    )
    return Case(
        case_id, task, prompt, inp, gt, edit, inst, scene.video_id, [obj.object_id], notes, eff
    )


def write_case(root: Path, case: Case, cfg: WorldConfig, seed: int) -> None:
    folder = CaseFolder(root / case.case_id)
    shutil.rmtree(folder.dir, ignore_errors=True)
    effect = case.effect_mask if case.effect_mask is not None else np.zeros_like(case.object_mask)
    for sub in folder.frame_folders:
        sub.mkdir(parents=True)
    for t in range(case.gt.shape[0]):
        name = frame_name(t)
        write_png(folder.input / name, case.input[t])
        write_png(folder.gt / name, case.gt[t])
        write_png(folder.edit_mask / name, case.edit_mask[t].astype(np.uint8) * 255)
        write_png(folder.object_mask / name, case.object_mask[t].astype(np.uint8) * 255)
        write_png(folder.effect_mask / name, effect[t].astype(np.uint8) * 255)
    write_png(folder.first_frame, case.gt[0])
    meta = {
        "id": case.case_id,
        "task": case.task,
        "prompt": case.prompt,
        "fps": cfg.fps,
        "num_frames": cfg.num_frames,
        "width": cfg.width,
        "height": cfg.height,
        "world_seed": seed,
        "video_id": case.video_id,
        "object_ids": case.object_ids,
        "notes": case.notes,
    }
    write_json_atomic(folder.meta, meta)


def _complete(root: Path, ids: list[str], cfg: WorldConfig, seed: int) -> bool:
    try:
        index = json.loads((root / INDEX).read_text())
        if [c["id"] for c in index["cases"]] != ids:
            return False
        for cid in ids:
            meta = json.loads(CaseFolder(root / cid).meta.read_text())
            got = (
                meta["width"],
                meta["height"],
                meta["num_frames"],
                meta["fps"],
                meta["world_seed"],
            )
            if got != (cfg.width, cfg.height, cfg.num_frames, cfg.fps, seed):
                return False
        return True
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return False


def write_benchmark(
    root: Path | str,
    cfg: WorldConfig,
    *,
    cases_per_task: int = 4,
    seed: int = 10_000,
    tasks: tuple[str, ...] = CASE_ORDER,
    force: bool = False,
    progress: Callable[[str], None] | None = stderr_progress,
) -> Path:
    """Write ``cases_per_task`` cases for each task under ``root`` (see module docstring).

    ``root`` must be new, empty, or a case folder this command wrote with the same parameters
    (its owner marker, :mod:`contracts.ownership`); ``force`` rewrites a folder of other
    parameters or a foreign one, touching only the case folders and ``index.json`` it writes.
    A second run into ``root`` while one is writing it is refused.

    Raises:
        ValueError: unknown tasks, ``cases_per_task < 1``, or ``root`` may not be written
            (:class:`contracts.ownership.FolderError`, one line naming it).
    """
    root, say = Path(root), progress or (lambda _m: None)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or cases_per_task < 1:
        raise ValueError(f"tasks {unknown} unknown (expected {TASKS}) or cases_per_task < 1")
    ids = [f"{task}_{i:03d}" for task in tasks for i in range(cases_per_task)]
    if not force and _complete(root, ids, cfg, seed):
        say(f"{root}: benchmark complete ({len(ids)} cases), nothing to do")
        return root
    params = {"world": cfg.to_dict(), "seed": seed, "tasks": list(tasks), "cases": cases_per_task}
    with owned_folder(
        root,
        tool=TOOL,
        config=params,
        overwrite=force,
        adopt=_earlier_cases,
        what="--out",
        overwrite_hint="--force",
        other_config=_other_params,
        details={"params": params},
    ) as claim:
        claim.record_outputs([*ids, INDEX])
        (root / INDEX).unlink(missing_ok=True)
        entries = []
        for task in tasks:
            j = _SLOTS[task]
            for i in range(cases_per_task):
                case_id = f"{task}_{i:03d}"
                for attempt in range(1000):
                    case = build_case(task, case_id, cfg, seed, j * 100_000 + i * 1000 + attempt)
                    if case is not None:
                        break
                else:
                    raise RuntimeError(f"{case_id}: no suitable toy-world video in 1000 attempts")
                write_case(root, case, cfg, seed)
                entries.append({"id": case_id, "task": task, "dir": case_id})
            say(f"{task}: {cases_per_task} cases")
        write_json_atomic(root / INDEX, {"version": INDEX_VERSION, "cases": entries})
    say(f"wrote {len(entries)} cases to {root}")
    return root


def _earlier_cases(root: Path) -> str | None:
    """A case folder written by this command before owner markers existed (its index names
    cases in ``<task>_<nnn>`` folders): ours, with parameters unknown."""
    try:
        index = json.loads((root / INDEX).read_text())
        ids = [c["id"] for c in index["cases"]]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None
    ours = ids and all(isinstance(i, str) and re.fullmatch(r"[a-z]+_\d{3}", i) for i in ids)
    return UNKNOWN_CONFIG if ours else None


def _other_params(root: Path, marker: dict) -> str:
    params = marker.get("params") if isinstance(marker.get("params"), dict) else {}
    seed, cases = params.get("seed", "?"), params.get("cases", "?")
    return (
        f"--out: {root} holds benchmark cases written with other parameters (seed {seed}, "
        f"{cases} cases per task, ...; see {MARKER}); rerun with those parameters, use another "
        "folder, or pass --force to rewrite its cases"
    )
