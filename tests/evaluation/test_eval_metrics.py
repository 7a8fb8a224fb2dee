"""Sanity of the evaluation metrics on synthetic data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_cases import background, render

from evaluation.metrics import (
    PSNR_CAP,
    boundary_f,
    psnr,
    psnr_outside,
    region_j,
    ssim,
    warping_error,
)
from evaluation.tracking import tracked_region


def _video(T: int = 3) -> np.ndarray:
    return np.stack([background(s) for s in range(T)])


def test_psnr_identical_is_capped_and_constant_offset_is_known() -> None:
    v = _video()
    assert psnr(v, v) == PSNR_CAP
    shifted = (v.astype(int) + 10).clip(0, 255).astype(np.uint8)  # background is 60..199: no clip
    assert psnr(shifted, v) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)


def test_psnr_inside_empty_mask_is_nan() -> None:
    v = _video()
    assert math.isnan(psnr(v, v, np.zeros(v.shape[:3], bool)))


def test_psnr_m_ignores_changes_inside_the_mask() -> None:
    v = _video()
    mask = np.zeros(v.shape[:3], bool)
    mask[:, 4:12, 4:12] = True
    changed = v.copy()
    changed[mask] = 0
    assert psnr_outside(changed, v, mask) == PSNR_CAP
    assert psnr(changed, v) < 30
    assert psnr(changed, v, mask) < 10


def test_ssim_identical_is_one_and_masked_drops_where_changed() -> None:
    v = _video()
    assert ssim(v, v) == pytest.approx(1.0)
    noisy = v.copy()
    noisy[:, :, :16] = np.random.default_rng(0).integers(0, 256, (3, 32, 16, 3), dtype=np.uint8)
    left = np.zeros(v.shape[:3], bool)
    left[:, :, :8] = True
    right = np.zeros(v.shape[:3], bool)
    right[:, :, 24:] = True
    assert ssim(noisy, v, left) < 0.5
    assert ssim(noisy, v, right) == pytest.approx(1.0)


def test_j_and_f() -> None:
    m = render().object_mask
    assert region_j(m, m) == 1.0
    assert boundary_f(m, m) == 1.0
    disjoint = np.roll(m, 16, axis=1)
    assert region_j(disjoint, m) == 0.0
    assert boundary_f(disjoint, m) == 0.0
    shifted = np.roll(m, 1, axis=2)  # within the 1-pixel boundary tolerance
    assert boundary_f(shifted, m) == 1.0
    assert 0.7 < region_j(shifted, m) < 0.8  # 7x8 / 9x8
    empty = np.zeros_like(m)
    assert region_j(empty, empty) == 1.0 and boundary_f(empty, empty) == 1.0


def test_warping_error_static_zero_flicker_positive() -> None:
    static = np.stack([background(0)] * 4)
    assert warping_error(static) == pytest.approx(0.0, abs=1e-12)
    flicker = static.copy()
    flicker[1::2] = flicker[1::2] + 40
    assert warping_error(flicker) > 1e-2
    moving = render(T=4).with_object  # smooth motion: small error
    assert warping_error(moving) < warping_error(flicker)


def test_tracked_region_extracts_red_and_excludes_input_red() -> None:
    w = render(T=3)
    out = w.with_object.copy()
    out[w.object_mask] = (250, 12, 8)
    np.testing.assert_array_equal(tracked_region(out), w.object_mask)
    inp = w.with_object.copy()
    inp[:, 0:2, 0:2] = (255, 0, 0)  # already red in the input: not painted by the method
    out[:, 0:2, 0:2] = (255, 0, 0)
    np.testing.assert_array_equal(tracked_region(out, inp), w.object_mask)
