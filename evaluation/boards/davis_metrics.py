"""J and F as the DAVIS 2017 semi-supervised evaluation computes them.

Our implementation of the official ``davis2017-evaluation`` (github.com/davisvideochallenge/
davis2017-evaluation, ``davis2017/metrics.py``, ``evaluation.py``, ``utils.py``); the numbers
match it, including its conventions, which differ from :mod:`evaluation.metrics` (our toy J/F):

- J (``db_eval_iou``): IoU per frame; a frame where both masks are empty scores 1.
- F (``db_eval_boundary``): boundaries by :func:`seg2bmap` (a pixel is on the boundary when it
  differs from its right, lower or lower-right neighbour), matched within a disk of radius
  ``ceil(0.008 * image diagonal)`` (``skimage.morphology.disk``, applied with ``cv2.dilate``).
  No predicted boundary against a ground-truth one scores 0; both empty score 1.
- Per object, the per-frame values give the mean ``M``, the recall ``R`` (fraction of frames above
  0.5) and the decay ``D`` (mean of the first quarter of the frames minus that of the last,
  :func:`statistics`).
- Void: the official reader turns the ground truth's 255 ("void") into background before scoring,
  so its void mask is empty and void pixels count as background. We do the same, so our numbers
  match the official ones on the same masks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.morphology import disk

BOUND_TH = 0.008  # boundary tolerance, a fraction of the image diagonal (official bound_th)
DECAY_BINS = 4  # the decay compares the first and the last of this many bins of frames


def iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-frame J of ``(T, H, W)`` bool masks: ``(T,)`` float64, 1 where both are empty."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ")
    gt, pred = gt.astype(bool), pred.astype(bool)
    inter = (gt & pred).sum(axis=(-2, -1)).astype(np.float64)
    union = (gt | pred).sum(axis=(-2, -1)).astype(np.float64)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool one-pixel boundary map of an ``(H, W)`` mask (the official ``_seg2bmap``
    at the mask's own size: boundaries offset half a pixel towards the origin)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def boundary_radius(height: int, width: int) -> int:
    """Match tolerance in pixels: ``ceil(0.008 * diagonal)`` (8 on a 854x480 frame)."""
    return math.ceil(BOUND_TH * math.hypot(height, width))


def f_measure(gt: np.ndarray, pred: np.ndarray) -> float:
    """Boundary F of one ``(H, W)`` frame (official ``f_measure``)."""
    kernel = disk(boundary_radius(*gt.shape)).astype(np.uint8)
    pred_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0  # precision 1 and recall 0, or the reverse
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    precision = float((pred_b & gt_dil).sum()) / n_pred
    recall = float((gt_b & pred_dil).sum()) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def boundary_f(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-frame F of ``(T, H, W)`` bool masks: ``(T,)`` float64."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ")
    return np.array([f_measure(g, p) for g, p in zip(gt, pred)], np.float64)


def statistics(values: np.ndarray) -> dict[str, float]:
    """Mean ``M``, recall ``R`` and decay ``D`` of one object's per-frame values (the official
    ``db_statistics``).

    The decay splits the frames into :data:`DECAY_BINS` bins at
    ``round(linspace(1, n, 5)) - 1`` (neighbouring bins share their edge frame) and returns the
    mean of the first bin minus that of the last.
    """
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"M": math.nan, "R": math.nan, "D": math.nan}
    edges = (np.round(np.linspace(1, len(values), DECAY_BINS + 1) + 1e-10) - 1).astype(int)
    bins = [values[edges[i] : edges[i + 1] + 1] for i in range(DECAY_BINS)]
    return {
        "M": float(np.nanmean(values)),
        "R": float(np.nanmean(values > 0.5)),
        "D": float(np.nanmean(bins[0]) - np.nanmean(bins[-1])),
    }


def score_objects(gt: np.ndarray, pred: np.ndarray, n_objects: int) -> list[dict[str, float]]:
    """J and F statistics of every object of one sequence.

    Args:
        gt: ``(T, H, W)`` uint8 ground-truth ids of the scored frames (void already 0).
        pred: ``(T, H, W)`` uint8 predicted ids of the same frames.
        n_objects: the sequence's object count (ids ``1..n_objects``); an object the prediction
            never shows scores as an empty mask.

    Returns:
        one dict per object with ``J-Mean``, ``J-Recall``, ``J-Decay``, ``F-Mean``, ``F-Recall``,
        ``F-Decay``.
    """
    rows = []
    for k in range(1, n_objects + 1):
        g, p = gt == k, pred == k
        row = {}
        for name, per_frame in (("J", iou(g, p)), ("F", boundary_f(g, p))):
            stats = statistics(per_frame)
            row |= {f"{name}-Mean": stats["M"], f"{name}-Recall": stats["R"]}
            row[f"{name}-Decay"] = stats["D"]
        rows.append(row)
    return rows
