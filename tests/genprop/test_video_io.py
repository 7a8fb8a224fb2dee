"""Round trips and errors of genprop.inference.video_io (PNG folders, mp4 h264/lossless, odd
sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genprop.inference.video_io import (
    VideoReadError,
    iter_frames,
    read_mask_dir,
    read_video,
    write_frames_dir,
    write_mask_dir,
    write_output,
    write_video,
)


def _smooth_video(T: int, H: int, W: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 smooth gradients (compress well, so h264 error stays small)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = []
    for t in range(T):
        c = rng.uniform(0.2, 0.8, size=3)
        img = np.stack([c[0] * 255 * xx / W, c[1] * 255 * yy / H, c[2] * 255 + 0 * xx], -1)
        frames.append(np.clip(img + 3 * t, 0, 255).astype(np.uint8))
    return np.stack(frames)


def test_png_dir_round_trip_is_exact(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (4, 7, 9, 3), dtype=np.uint8)
    write_frames_dir(tmp_path / "v", frames)
    assert sorted(p.name for p in (tmp_path / "v").iterdir())[0] == "00000.png"
    video = read_video(tmp_path / "v")
    np.testing.assert_array_equal(video.frames, frames)
    assert read_video(tmp_path / "v", max_frames=2).frames.shape == (2, 7, 9, 3)


@pytest.mark.parametrize(("H", "W"), [(32, 48), (31, 33)])
def test_h264_mp4_keeps_size_fps_and_count(tmp_path: Path, H: int, W: int) -> None:
    frames = _smooth_video(6, H, W)
    write_video(tmp_path / "a.mp4", frames, fps=12.5)
    video = read_video(tmp_path / "a.mp4")
    assert video.frames.shape == (6, H, W, 3)
    assert video.fps == pytest.approx(12.5)
    assert np.abs(video.frames.astype(int) - frames).mean() < 4.0


def test_lossless_mp4_is_exact_at_odd_size(tmp_path: Path) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (3, 13, 11, 3), dtype=np.uint8)
    write_video(tmp_path / "l.mp4", frames, fps=30000 / 1001, codec="lossless")
    video = read_video(tmp_path / "l.mp4")
    np.testing.assert_array_equal(video.frames, frames)
    assert video.fps == pytest.approx(29.97, abs=1e-2)


def test_streaming_reader_caps_frames(tmp_path: Path) -> None:
    write_video(tmp_path / "a.mp4", _smooth_video(8, 16, 16), fps=8)
    assert len(list(iter_frames(tmp_path / "a.mp4", max_frames=3))) == 3


def test_masks_round_trip(tmp_path: Path) -> None:
    masks = np.zeros((2, 5, 6), np.float32)
    masks[0, 1:3, 2:4] = 1.0
    masks[1, 4, 5] = 0.9
    write_mask_dir(tmp_path / "m", masks)
    np.testing.assert_array_equal(read_mask_dir(tmp_path / "m"), masks > 0.5)


def test_write_output_chooses_format(tmp_path: Path) -> None:
    frames = _smooth_video(2, 8, 8)
    assert write_output(tmp_path / "o.mp4", frames, 10).is_file()
    assert write_output(tmp_path / "frames", frames, 10).is_dir()
    with pytest.raises(ValueError, match=r"o\.gif"):
        write_output(tmp_path / "o.gif", frames, 10)


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match=r"missing\.mp4"):
        read_video(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError, match=r"bad\.mp4"):
        read_video(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no frame images"):
        read_video(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    write_frames_dir(mixed, [np.zeros((4, 4, 3), np.uint8)])
    write_frames_dir(tmp_path / "other", [np.zeros((5, 4, 3), np.uint8)])
    (tmp_path / "other" / "00000.png").rename(mixed / "00001.png")
    with pytest.raises(VideoReadError, match=r"00001\.png"):
        read_video(mixed)


def test_real_mp4_reads(shared_data: Path) -> None:
    video = read_video(shared_data / "mp4_masks" / "schoolgirls.mp4", max_frames=5)
    assert video.frames.shape == (5, 240, 432, 3)
    assert video.fps == pytest.approx(24.0)
