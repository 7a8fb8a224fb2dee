"""Score one method's output on one evaluation case (the metrics ``genprop-eval`` reports).

Frame 0 is given to every method (it is the edited first frame), so all per-frame metrics use
frames 1..T-1 only. The warping error uses every consecutive pair of the output, since each pair
contains at least one generated frame.

Metric names (columns of the report):
- ``PSNR``, ``SSIM``: whole frame vs the ground truth.
- ``PSNR_m``: PSNR outside the edit mask (the paper's background metric).
- ``PSNR_edit``, ``SSIM_edit``: inside the edit mask, which includes effects (object ∪ shadow ∪
  reflection) for removal / insertion / edit.
- ``E_warp``: temporal warping error of the output (lower is better).
- ``Seams``: :func:`~evaluation.metrics.seam_ratio` inside the edit mask ∪ the object mask on the
  token grid of the GenProp model under test (``seam_period`` pixels; lower is better, 1 = no
  grid), scored for every method so the ground truth's own level shows in the baselines'.
- tracking cases: ``J_obj``/``F_obj`` of the tracked (red) region vs the object mask and
  ``J_obj+fx``/``F_obj+fx`` vs object ∪ effects (only when the case has ``effect_mask/``).
- MPD masks, when the method wrote them: ``MPD_J_obj``, ``MPD_F_obj``, ``MPD_J_obj+fx``,
  ``MPD_F_obj+fx`` for tracking; ``MPD_J_edit``, ``MPD_F_edit`` vs the edit mask otherwise.
- ``CLIP_T``, ``CLIP_I`` with a CLIP model (see :mod:`evaluation.clip_score`).
"""

from __future__ import annotations

import numpy as np

from evaluation.cases import EvalCase
from evaluation.clip_score import ClipScorer
from evaluation.metrics import (
    boundary_f,
    psnr,
    psnr_outside,
    region_j,
    seam_ratio,
    ssim,
    warping_error,
)
from evaluation.tracking import tracked_region

HIGHER_IS_BETTER = {"E_warp": False, "Seams": False}  # every other metric: higher is better


def _jf(prefix: str, pred: np.ndarray, target: np.ndarray, suffix: str) -> dict[str, float]:
    return {
        f"{prefix}J_{suffix}": region_j(pred, target),
        f"{prefix}F_{suffix}": boundary_f(pred, target),
    }


def score_case(
    case: EvalCase,
    output: np.ndarray,
    masks: np.ndarray | None = None,
    clip: ClipScorer | None = None,
    seam_period: int | None = None,
) -> dict[str, float]:
    """All metrics of one output.

    Args:
        case: the loaded case (input, gt and masks ``(T, H, W, ...)``).
        output: ``(T, H, W, 3)`` uint8, the method's video.
        masks: ``(T, H, W)`` bool predicted edit masks (MPD), or None.
        clip: a loaded CLIP scorer, or None to skip CLIP metrics.
        seam_period: the token grid in pixels for ``Seams``, or None to skip it.

    Returns:
        metric name -> value (NaN where undefined, e.g. an empty region).
    """
    if output.shape != case.gt.shape:
        raise ValueError(f"case {case.id}: output {output.shape} vs ground truth {case.gt.shape}")
    out, gt = output[1:], case.gt[1:]
    edit = case.edit_mask[1:]
    scores = {
        "PSNR": psnr(out, gt),
        "SSIM": ssim(out, gt),
        "PSNR_m": psnr_outside(out, gt, edit),
        "PSNR_edit": psnr(out, gt, edit),
        "SSIM_edit": ssim(out, gt, edit),
        "E_warp": warping_error(output),
    }
    obj = case.object_mask[1:]
    if seam_period is not None:
        scores["Seams"] = seam_ratio(out, edit | obj, seam_period)
    fx = case.object_and_effects
    if case.task == "tracking":
        region = tracked_region(out, case.input[1:])
        scores |= _jf("", region, obj, "obj")
        if fx is not None:
            scores |= _jf("", region, fx[1:], "obj+fx")
    if masks is not None:
        pred = masks[1:].astype(bool)
        if case.task == "tracking":
            scores |= _jf("MPD_", pred, obj, "obj")
            if fx is not None:
                scores |= _jf("MPD_", pred, fx[1:], "obj+fx")
        else:
            scores |= _jf("MPD_", pred, edit, "edit")
    if clip is not None:
        if case.prompt:
            scores["CLIP_T"] = clip.text_similarity(out, case.prompt)
        scores["CLIP_I"] = clip.image_similarity(out, case.first)
    return scores
