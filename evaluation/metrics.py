"""Frame-quality, temporal and segmentation metrics for propagated videos.

All videos are ``(T, H, W, 3)`` uint8 RGB numpy arrays, masks ``(T, H, W)`` bool. Functions take
whole clips and average per frame; the caller decides which frames count (``genprop-eval`` drops
frame 0, which is given to every method).

Conventions (documented because they change numbers):
- PSNR is computed per frame on 0..255 values and averaged over frames; an identical frame (or
  region) has infinite PSNR, which is capped at :data:`PSNR_CAP` dB so averages stay finite.
  PSNR over an empty region is NaN (undefined; averaged with ``nanmean`` by the report).
- SSIM uses ``skimage.metrics.structural_similarity`` (7x7 Gaussian-free window, data range 255,
  RGB channels averaged); masked SSIM is the full SSIM map averaged inside the mask.
- Warping error (Lai et al., ECCV 2018): for each pair of consecutive *output* frames, dense optical
  flow is computed on the output itself (OpenCV DIS, backward t -> t-1), frame t-1 is warped onto
  frame t, and the squared error on [0, 1] intensities is averaged over pixels that pass a
  forward-backward consistency check (occlusions excluded). It measures flicker, not fidelity.
- J is the region IoU, F the DAVIS boundary F-measure with a tolerance of
  ``max(1, round(0.008 * diagonal))`` pixels; a frame where both masks are empty scores 1.
- Seams (:func:`seam_ratio`): how much stronger the image changes across the lines of a model's
  token grid than between other neighbouring pixels, inside a region: 1 for content that does not
  know the grid (a real video, the ground truth), 2 when a step across a token border is on
  average twice a step elsewhere (the p x p squares of a DiT that decodes each token on its own).
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
from skimage.metrics import structural_similarity

PSNR_CAP = 100.0  # dB reported for an exact match (MSE == 0)
BOUNDARY_TOLERANCE = 0.008  # DAVIS: fraction of the image diagonal
SMALL_FRAME = 128  # frames smaller than this on a side get finer optical-flow patches
SEAM_FLOOR = 1.0  # added to both mean steps (0..255 levels): a flat region scores 1, not 0 / 0


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"videos differ in shape: {a.shape} vs {b.shape}")


def _frame_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return math.nan
        diff = diff[mask]
    mse = float(diff.mean())
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse))


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean per-frame PSNR in dB, optionally restricted to ``mask``.

    Args:
        pred: ``(T, H, W, 3)`` uint8.
        target: ``(T, H, W, 3)`` uint8.
        mask: ``(T, H, W)`` bool; only pixels where it is True count. Frames with an empty mask
            are skipped; NaN if every frame's mask is empty.
    """
    _check_pair(pred, target)
    values = [
        _frame_psnr(p, g, None if mask is None else mask[t])
        for t, (p, g) in enumerate(zip(pred, target))
    ]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def psnr_outside(pred: np.ndarray, target: np.ndarray, edit_mask: np.ndarray) -> float:
    """PSNR_m (the paper's background metric): PSNR outside the ``(T, H, W)`` edit mask."""
    return psnr(pred, target, ~edit_mask.astype(bool))


def ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean per-frame SSIM, the SSIM map averaged inside ``mask`` when given (NaN if empty).

    Frames must be at least 7x7 (the SSIM window).
    """
    _check_pair(pred, target)
    values = []
    for t, (p, g) in enumerate(zip(pred, target)):
        m = None if mask is None else mask[t].astype(bool)
        if m is not None and not m.any():
            continue
        _, smap = structural_similarity(p, g, channel_axis=2, data_range=255, full=True)
        smap = smap.mean(axis=2)
        values.append(float(smap[m].mean() if m is not None else smap.mean()))
    return float(np.mean(values)) if values else math.nan


def dense_flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` such that ``src(x) ~ dst(x + flow(x))``; uint8 RGB inputs.

    OpenCV DIS, medium preset, refined down to full resolution; frames under
    :data:`SMALL_FRAME` pixels on a side use 4x4 patches (the 8x8 default underestimates the motion
    of small objects by ~20 % on 32x32 toy frames).
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)
    if min(src.shape[:2]) < SMALL_FRAME:
        dis.setPatchSize(4)
        dis.setPatchStride(2)
    g0 = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(dst, cv2.COLOR_RGB2GRAY)
    return dis.calc(g0, g1, None)


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample an ``(H, W, C)`` or ``(H, W)`` image at ``x + flow(x)`` (bilinear, edge replicate)."""
    H, W = flow.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(W), np.arange(H)), -1).astype(np.float32)
    coords = grid + flow
    return cv2.remap(
        image, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _consistent(fw: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """Forward-backward check (Sundaram et al. 2010): ``(H, W)`` True where flow is reliable."""
    bw_at = backward_warp(bw, fw)
    H, W = fw.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(W), np.arange(H)), -1).astype(np.float32) + fw
    inside = (
        (grid[..., 0] >= 0)
        & (grid[..., 0] <= W - 1)
        & (grid[..., 1] >= 0)
        & (grid[..., 1] <= H - 1)
    )
    err = np.sum((fw + bw_at) ** 2, -1)
    bound = 0.01 * (np.sum(fw**2, -1) + np.sum(bw_at**2, -1)) + 0.5
    return inside & (err < bound)


def warping_error(video: np.ndarray) -> float:
    """Temporal warping error of a ``(T, H, W, 3)`` uint8 video (0 = perfectly consistent).

    Mean over consecutive pairs of the squared error (on [0, 1] values) between frame t and frame
    t-1 warped onto it with the video's own optical flow, over flow-consistent pixels.
    NaN for a video of one frame.
    """
    errors = []
    for prev, cur in itertools.pairwise(video):
        fw = dense_flow(cur, prev)  # cur(x) ~ prev(x + fw(x))
        bw = dense_flow(prev, cur)
        valid = _consistent(fw, bw)
        if not valid.any():
            continue
        warped = backward_warp(prev, fw).astype(np.float64) / 255.0
        sq = ((cur.astype(np.float64) / 255.0 - warped) ** 2).mean(-1)
        errors.append(float(sq[valid].mean()))
    return float(np.mean(errors)) if errors else math.nan


def region_j(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean per-frame IoU of two ``(T, H, W)`` bool masks (1 where both are empty)."""
    _check_pair(pred, target)
    values = []
    for p, g in zip(pred.astype(bool), target.astype(bool)):
        union = np.logical_or(p, g).sum()
        values.append(1.0 if union == 0 else float(np.logical_and(p, g).sum() / union))
    return float(np.mean(values)) if values else math.nan


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel inner boundary ``(H, W)`` bool of an ``(H, W)`` bool mask (mask minus erosion)."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m - eroded).astype(bool)


def _frame_f(p: np.ndarray, g: np.ndarray, radius: int) -> float:
    bp, bg = mask_boundary(p), mask_boundary(g)
    if not bp.any() and not bg.any():
        return 1.0
    if not bp.any() or not bg.any():
        return 0.0
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    gd = cv2.dilate(bg.astype(np.uint8), disk).astype(bool)
    pd = cv2.dilate(bp.astype(np.uint8), disk).astype(bool)
    precision = float((bp & gd).sum() / bp.sum())
    recall = float((bg & pd).sum() / bg.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_f(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean per-frame DAVIS boundary F-measure of two ``(T, H, W)`` bool masks."""
    _check_pair(pred, target)
    H, W = pred.shape[1:3]
    radius = max(1, round(BOUNDARY_TOLERANCE * math.hypot(H, W)))
    values = [_frame_f(p, g, radius) for p, g in zip(pred.astype(bool), target.astype(bool))]
    return float(np.mean(values)) if values else math.nan


def seam_ratio(video: np.ndarray, region: np.ndarray, period: int) -> float:
    """Seam strength of a ``(T, H, W, 3)`` video on a ``period``-pixel grid inside ``region``.

    For every pair of horizontal or vertical neighbours that both lie in ``region`` ``(T, H, W)``,
    the step is the mean absolute RGB difference (0..255). The pairs across a grid line (pixel
    ``k * period - 1`` and ``k * period``) are the seams, the others the interior. Returns
    ``(mean seam step + SEAM_FLOOR) / (mean interior step + SEAM_FLOOR)``: about 1 for content
    that does not follow the grid, above 1 where the grid shows. NaN when the region has no seam
    pair or no interior pair.
    """
    if video.ndim != 4 or video.shape[:3] != region.shape:
        raise ValueError(f"seam_ratio: video {video.shape} and region {region.shape} differ")
    if period < 2:
        raise ValueError(f"seam_ratio: period must be >= 2 pixels, got {period}")
    x = video.astype(np.float32)
    m = region.astype(bool)
    sums = np.zeros(4)  # seam step sum, seam pairs, interior step sum, interior pairs
    for axis in (1, 2):
        step = np.abs(np.diff(x, axis=axis)).mean(-1)
        both = np.logical_and(np.delete(m, -1, axis=axis), np.delete(m, 0, axis=axis))
        shape = [1, 1, 1]
        shape[axis] = -1
        across = ((np.arange(step.shape[axis]) + 1) % period == 0).reshape(shape)
        for k, where in ((0, both & across), (2, both & ~across)):
            sums[k] += float(step[where].sum())
            sums[k + 1] += float(where.sum())
    if sums[1] == 0 or sums[3] == 0:
        return math.nan
    return float((sums[0] / sums[1] + SEAM_FLOOR) / (sums[2] / sums[3] + SEAM_FLOOR))
