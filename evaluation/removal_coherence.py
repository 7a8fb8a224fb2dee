"""RC-S and RC-T, the PROVE removal-coherence metrics (Li et al., ACM MM 2026, arXiv 2605.14534).

A faithful re-implementation of the released scorer, github.com/xiaomi-research/prove
(``utils/metrics.py``, ``utils/predictors.py``, ``utils/bbox.py``, ``run_prove_metrics.py``;
Apache-2.0). Both compare DINOv2 patch-feature distributions with a Gaussian-kernel MMD
(:func:`rbf_mmd`: features L2-normalised, sigma 10, biased estimate, times 1000).

- **RC-S** (spatial, higher is better, in (0, 1]): per frame, the mask (grey > 127) is split into
  4-connected components; components smaller than 200 pixels are ignored (unless none reaches 200,
  then those below the largest one). Each component gets a square crop around its bounding box,
  grown by a third of its side within the image (:func:`bounding_square`). The crop goes through
  DINOv2 (:mod:`evaluation.dino`); on the patch grid, windows of 16 x 16 patches per 64 patches of
  the grid's longer side (stride 8 per 64; 8 and 4 for the 32-patch grid of a 448-pixel crop) are
  scored: a window holding more than 5 mask and more than 5 background patches by the MMD between
  the two sets; a window of only mask patches (more than 5) by the MMD against every background
  patch of the crop. A patch counts as mask when any grey value > 0 falls in it. The crop's score
  is ``exp(-max(0, mean MMD) / 3)``, the frame's the mean over its crops, the video's the mean over
  frames with a score.
- **RC-T** (temporal, lower is better, >= 0): for frames t and t+1, both masks (first channel
  > 127) are joined, one square crop is cut around the union as above, both crops go through
  DINOv2, and every window holding at least 5 patches inside *both* masks is scored by the MMD
  between the two frames' features there. The pair's score is the mean MMD, the video's the mean
  over pairs with a score.

The scorer reads at most :data:`MAX_FRAMES` frames and resizes the output to the mask's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from skimage.measure import label

from evaluation.dino import Geometry, fit_image, fit_mask

MAX_FRAMES = 81  # the PROVE scorer's frame limit per video
MIN_AREA = 200  # pixels: smaller mask components are ignored by RC-S
EXPANSION = 1 / 3  # a crop grows by this fraction of its side on each side
KERNEL, STRIDE = 16, 8  # sliding window in patches, per 64 patches of the grid's longer side
TAU = 3.0  # RC-S temperature: exp(-MMD / TAU)
SIGMA = 10.0  # RBF kernel width on unit-normalised features
MIN_POINTS = 5  # RC-S: > 5 patches per set; RC-T: >= 5 shared mask patches per window

# A feature extractor: padded (Hp, Wp, 3) uint8 image -> (C, Hp/14, Wp/14) float tensor.
Extractor = Callable[[np.ndarray], torch.Tensor]


def rbf_mmd(x: torch.Tensor, y: torch.Tensor, sigma: float = SIGMA) -> float:
    """Biased squared MMD (x1000) of ``(N, C)`` and ``(M, C)`` features, L2-normalised first."""
    x = torch.nn.functional.normalize(x, p=2, dim=1)
    y = torch.nn.functional.normalize(y, p=2, dim=1)
    gamma = 1.0 / (2.0 * sigma**2)
    k_xx = torch.exp(-gamma * torch.cdist(x, x).pow(2)).mean()
    k_yy = torch.exp(-gamma * torch.cdist(y, y).pow(2)).mean()
    k_xy = torch.exp(-gamma * torch.cdist(x, y).pow(2)).mean()
    return float(k_xx + k_yy - 2 * k_xy) * 1000.0


def bounding_square(binary: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x1, y1, x2, y2)`` of the square crop around the nonzero pixels of an ``(H, W)`` mask.

    The bounding box's centred square, grown by a third of its side on each side but by no more
    than the room to the nearest image edge (nor half its side), then clipped to the image (PROVE's
    ``find_bounding_square_1_3``). None for an empty mask.
    """
    rows, cols = np.nonzero(binary)
    if rows.size == 0:
        return None
    img_h, img_w = binary.shape[:2]
    left, upper = int(cols.min()), int(rows.min())
    right, lower = int(cols.max()) + 1, int(rows.max()) + 1
    size = max(right - left, lower - upper)
    start_x = round((left + right) / 2.0 - size / 2)
    start_y = round((upper + lower) / 2.0 - size / 2)
    room = (start_x, start_y, img_w - (start_x + size), img_h - (start_y + size))
    sub = max(min(round(size * EXPANSION), *room, size // 2), 0)
    final = min(size + 2 * sub, min(img_w, img_h))
    x = max(0, min(max(0, start_x - sub), img_w - final))
    y = max(0, min(max(0, start_y - sub), img_h - final))
    return x, y, x + final, y + final


def _windows(grid: tuple[int, int]) -> tuple[int, int]:
    scale = max(grid) / 64.0
    return max(1, int(KERNEL * scale)), max(1, int(STRIDE * scale))


def _unfold(t: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """``(C, H, W)`` -> ``(L, C, K*K)``: the values of each window."""
    c = t.shape[0]
    cols = torch.nn.functional.unfold(t[None], kernel_size=kernel, stride=stride)
    return cols.view(c, kernel * kernel, -1).permute(2, 0, 1)


def _features(image: np.ndarray, extract: Extractor) -> tuple[torch.Tensor, Geometry]:
    padded, geo = fit_image(image)
    return extract(padded), geo


def crop_coherence(image: np.ndarray, mask: np.ndarray, extract: Extractor) -> float:
    """RC-S of one crop: ``exp(-mean window MMD / 3)``; NaN when no window qualifies.

    Args:
        image: ``(h, w, 3)`` uint8 crop.
        mask: ``(h, w)`` grey values; a patch is mask where any value > 0 falls in it.
        extract: DINOv2 feature extractor (:class:`evaluation.dino.DinoFeatures`).
    """
    feats, geo = _features(image, extract)
    small = fit_mask(mask, geo).to(feats.device)
    kernel, stride = _windows(geo.grid)
    background = feats[:, small == 0].T
    win_feats = _unfold(feats, kernel, stride)
    win_mask = _unfold(small[None], kernel, stride)[:, 0]
    scores = []
    for f, m in zip(win_feats, win_mask):
        fg, bg = m > 0, m == 0
        n_fg, n_bg = int(fg.sum()), int(bg.sum())
        if n_fg > MIN_POINTS and n_bg > MIN_POINTS:
            scores.append(rbf_mmd(f[:, fg].T, f[:, bg].T))
        elif n_fg > MIN_POINTS and n_bg == 0 and background.shape[0] > 0:
            scores.append(rbf_mmd(f[:, fg].T, background))
    if not scores:
        return math.nan
    return math.exp(-max(0.0, sum(scores) / len(scores)) / TAU)


def _grey(mask: np.ndarray) -> np.ndarray:
    """PIL's ``L`` conversion of an ``(H, W, 3)`` mask frame (``(H, W)`` passes through)."""
    return mask if mask.ndim == 2 else np.asarray(Image.fromarray(mask).convert("L"))


def rc_s_frame(image: np.ndarray, mask: np.ndarray, extract: Extractor) -> float:
    """RC-S of one ``(H, W, 3)`` uint8 frame and its ``(H, W[, 3])`` uint8 mask (NaN: none)."""
    grey = _grey(mask)
    components = label(grey > 127, connectivity=1)
    areas = np.bincount(components.ravel())[1:]
    if areas.size == 0:
        return math.nan
    min_area = min(MIN_AREA, int(areas.max()))
    scores = []
    for index in np.flatnonzero(areas >= min_area):
        box = bounding_square(components == index + 1)
        if box is None:
            continue
        x1, y1, x2, y2 = box
        scores.append(crop_coherence(image[y1:y2, x1:x2], grey[y1:y2, x1:x2], extract))
    return float(np.mean(scores)) if scores else math.nan


def rc_t_pair(
    image_t: np.ndarray,
    image_t1: np.ndarray,
    mask_t: np.ndarray,
    mask_t1: np.ndarray,
    extract: Extractor,
) -> float:
    """RC-T of consecutive ``(H, W, 3)`` uint8 frames and their uint8 mask frames (NaN: none)."""
    bins = [(m[..., 0] if m.ndim == 3 else m) > 127 for m in (mask_t, mask_t1)]
    box = bounding_square(bins[0] | bins[1])
    if box is None:
        return math.nan
    x1, y1, x2, y2 = box
    feats_t, geo = _features(image_t[y1:y2, x1:x2], extract)
    feats_t1, _ = _features(image_t1[y1:y2, x1:x2], extract)
    smalls = [fit_mask(b[y1:y2, x1:x2].astype(np.float32) * 255, geo) for b in bins]
    shared = ((smalls[0] > 0.5) & (smalls[1] > 0.5)).float().to(feats_t.device)
    kernel, stride = _windows(geo.grid)
    win_mask = _unfold(shared[None], kernel, stride)[:, 0] > 0.5
    scores = [
        rbf_mmd(ft[:, m].T, ft1[:, m].T)
        for ft, ft1, m in zip(
            _unfold(feats_t, kernel, stride), _unfold(feats_t1, kernel, stride), win_mask
        )
        if int(m.sum()) >= MIN_POINTS
    ]
    return sum(scores) / len(scores) if scores else math.nan


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def rc_s(video: np.ndarray, masks: np.ndarray, extract: Extractor) -> float:
    """Video RC-S: mean over frames with a score of :func:`rc_s_frame`."""
    return _nanmean([rc_s_frame(f, m, extract) for f, m in zip(video, masks)])


def rc_t(video: np.ndarray, masks: np.ndarray, extract: Extractor) -> float:
    """Video RC-T: mean over consecutive pairs with a score of :func:`rc_t_pair`."""
    return _nanmean(
        [
            rc_t_pair(video[t], video[t + 1], masks[t], masks[t + 1], extract)
            for t in range(len(video) - 1)
        ]
    )
