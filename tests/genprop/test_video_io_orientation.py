"""genprop's input reading decodes through contracts.frames: phone videos (display matrix) and
EXIF-rotated frames come out upright, 16-bit PNG frames are not white, outputs play the way the
input plays, and :func:`open_video` streams with the count and size known up front."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from contracts.frames import probe_video
from genprop import GenPropModel, preset
from genprop.cli.propagate import main
from genprop.inference.video_io import (
    VideoReadError,
    iter_frames,
    open_video,
    read_image,
    read_mask_dir,
    read_video,
    write_video,
)

RNG = np.random.default_rng(0)
# Five 48x32 (H x W) frames as a player shows them: a portrait phone video.
SHOWN = RNG.integers(0, 256, (5, 48, 32, 3), dtype=np.uint8)


def write_phone_mp4(path: Path, shown: np.ndarray, fps: int = 8) -> Path:
    """A lossless mp4 stored sideways with a phone's display matrix (turn 90 degrees clockwise
    to show), so that it plays as ``shown``."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=fps)
        s.width, s.height, s.pix_fmt = shown.shape[1], shown.shape[2], "rgb24"
        s.options = {"qp": "0", "preset": "ultrafast"}
        s.set_display_rotation(-90)
        for f in shown:
            stored = np.ascontiguousarray(np.rot90(f, 1))
            c.mux(s.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        c.mux(s.encode(None))
    return path


def write_exif_frames(folder: Path, shown: np.ndarray, orientation: int = 6) -> Path:
    """PNG frames stored sideways with EXIF ``orientation`` 6 (or 8) so they display as
    ``shown``."""
    folder.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    for i, f in enumerate(shown):
        stored = np.ascontiguousarray(np.rot90(f, 1 if orientation == 6 else -1))
        Image.fromarray(stored).save(folder / f"{i:05d}.png", exif=exif)
    return folder


def test_phone_mp4_is_read_upright(tmp_path: Path) -> None:
    path = write_phone_mp4(tmp_path / "phone.mp4", SHOWN)
    video = read_video(path)
    np.testing.assert_array_equal(video.frames, SHOWN)
    assert video.fps == pytest.approx(8.0)
    np.testing.assert_array_equal(np.stack(list(iter_frames(path, max_frames=2))), SHOWN[:2])


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_frames_folder_is_read_upright(tmp_path: Path, orientation: int) -> None:
    folder = write_exif_frames(tmp_path / "frames", SHOWN, orientation)
    np.testing.assert_array_equal(read_video(folder).frames, SHOWN)
    np.testing.assert_array_equal(read_image(folder / "00003.png"), SHOWN[3])


def test_16_bit_png_frames_are_scaled_not_white(tmp_path: Path) -> None:
    """16-bit greyscale frames used to be read 98.7 % white (PIL clips above 255)."""
    grey = RNG.integers(0, 65536, (3, 12, 16), dtype=np.uint16)
    folder = tmp_path / "g16"
    folder.mkdir()
    for i, g in enumerate(grey):
        Image.fromarray(g).save(folder / f"{i:05d}.png")
    expected = (grey >> 8).astype(np.uint8)
    np.testing.assert_array_equal(read_video(folder).frames, np.repeat(expected[..., None], 3, -1))
    np.testing.assert_array_equal(read_image(folder / "00001.png", mode="L"), expected[1])
    np.testing.assert_array_equal(read_mask_dir(folder), expected >= 128)
    rgb16 = RNG.integers(0, 65536, (12, 16, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    np.testing.assert_array_equal(read_image(tmp_path / "rgb16.png"), (rgb16 >> 8).astype(np.uint8))


@pytest.mark.parametrize("codec", ["lossless", "h264"])
def test_output_plays_like_the_input(tmp_path: Path, codec: str) -> None:
    """Frames read upright and written back carry no rotation: a player shows the output as it
    showed the input (odd sizes included, through the writer's size tag)."""
    yy, xx = np.mgrid[0:47, 0:31]  # odd sizes: the h264 writer pads and tags them
    smooth = np.stack([200 * xx // 31, 200 * yy // 47, 0 * xx + 60], -1)  # h264-friendly
    shown = np.stack([smooth + 20 * t for t in range(3)]).astype(np.uint8)
    src = write_phone_mp4(tmp_path / "phone.mp4", shown)
    assert not probe_video(src).orientation.is_upright
    out = write_video(tmp_path / "out.mp4", read_video(src).frames, fps=8, codec=codec)
    info = probe_video(out)
    assert info.orientation.is_upright
    back = read_video(out).frames
    assert back.shape == shown.shape
    if codec == "lossless":
        np.testing.assert_array_equal(back, shown)
    else:
        assert np.abs(back.astype(int) - shown.astype(int)).mean() < 3


def test_open_video_knows_count_and_size_before_decoding(tmp_path: Path) -> None:
    path = write_phone_mp4(tmp_path / "phone.mp4", SHOWN)
    stream = open_video(path)
    assert (stream.count, stream.height, stream.width) == (5, 48, 32)
    assert stream.fps == pytest.approx(8.0)
    np.testing.assert_array_equal(np.stack(list(stream)), SHOWN)
    short = open_video(path, max_frames=2)
    assert short.count == 2 and len(list(short)) == 2
    folder = open_video(write_exif_frames(tmp_path / "frames", SHOWN), max_frames=4)
    assert (folder.count, folder.height, folder.width) == (4, 48, 32)
    np.testing.assert_array_equal(np.stack(list(folder)), SHOWN[:4])


def test_open_video_refuses_truncated_and_missing_files(tmp_path: Path) -> None:
    data = write_phone_mp4(tmp_path / "phone.mp4", SHOWN).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match=r"cut\.mp4"):
        stream = open_video(cut)
        for _ in stream:
            pass
    with pytest.raises(VideoReadError, match=r"nowhere\.mp4"):
        open_video(tmp_path / "nowhere.mp4")


def test_propagate_cli_reads_a_phone_video_upright(tmp_path: Path) -> None:
    """``genprop-propagate`` on a portrait phone mp4 with an upright edit: it used to read the
    video sideways and refuse the edit ('resize the edit to 48x32'); now the output is upright,
    the edit's size, with no rotation tag."""
    write_phone_mp4(tmp_path / "phone.mp4", SHOWN[:3])
    Image.fromarray(SHOWN[0]).save(tmp_path / "edit.png")
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "model")
    base = ["--model", tmp_path / "model", "--video", tmp_path / "phone.mp4"]
    base += ["--first-frame", tmp_path / "edit.png", "--task", "tracking", "--steps", "1"]
    assert main([str(a) for a in [*base, "--out", tmp_path / "out"]]) == 0
    frames = read_video(tmp_path / "out").frames
    assert frames.shape == (3, 48, 32, 3)
    np.testing.assert_array_equal(frames[0], SHOWN[0])  # tracking keeps the edit as frame 0
    assert main([str(a) for a in [*base, "--out", tmp_path / "out.mp4"]]) == 0
    info = probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height, info.orientation.is_upright) == (32, 48, True)
