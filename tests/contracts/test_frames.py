"""contracts.frames, the one frame decoder: images and video frames come out upright (EXIF
orientation, video display matrix), sizes reported before decoding are the upright sizes, and
16-bit greyscale is scaled instead of clipped."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from contracts.frames import (
    EXIF_ORIENTATIONS,
    FrameError,
    decode_image,
    display_orientation,
    frame_to_rgb8,
    image_size,
    probe_video,
)

# A 6x10 picture whose every pixel is distinct, so any wrong turn or mirror shows.
PIXELS = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3) * 3


def save_with_orientation(path: Path, pixels: np.ndarray, orientation: int, **kw) -> Path:
    """Save ``pixels`` as stored with an EXIF Orientation tag (PNG eXIf chunk or JPEG APP1)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **kw)
    return path


def write_rotated_mp4(
    path: Path, frames: np.ndarray, degrees: int, *, hflip: bool = False, vflip: bool = False
) -> Path:
    """A lossless mp4 of ``frames`` as stored, with a display matrix turning them by
    ``degrees`` counter-clockwise and then mirroring (PyAV's ``set_display_rotation``)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=8)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        s.options = {"qp": "0", "preset": "ultrafast"}
        s.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil_exif_transpose(tmp_path: Path, orientation: int) -> None:
    """All eight EXIF orientations are applied as PIL's ``exif_transpose`` (the reference) does,
    and the size from the header is the decoded one."""
    path = save_with_orientation(tmp_path / "f.png", PIXELS, orientation)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = decode_image(path)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    assert image_size(path) == (expected.shape[1], expected.shape[0])
    np.testing.assert_array_equal(
        decode_image(path, mode="L"), np.asarray(Image.fromarray(expected).convert("L"))
    )


def test_phone_jpeg_orientation_6_is_turned_clockwise(tmp_path: Path) -> None:
    """A phone JPEG stored sideways with Orientation 6 is shown turned 90 degrees clockwise."""
    stored = np.zeros((40, 64, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)  # red in the stored top-left corner
    path = save_with_orientation(tmp_path / "p.jpg", stored, 6, quality=95)
    assert image_size(path) == (40, 64)
    got = decode_image(path, size=(40, 64))
    assert got.shape == (64, 40, 3)
    assert got[2, -3, 0] > 200 and got[2, 2, 0] < 50  # now the top-right corner
    with pytest.raises(FrameError, match=r"p\.jpg: image is 40x64, expected 64x40"):
        decode_image(path, size=(64, 40))


def test_malformed_or_out_of_range_orientation_is_ignored(tmp_path: Path) -> None:
    path = save_with_orientation(tmp_path / "f.png", PIXELS, 9)
    np.testing.assert_array_equal(decode_image(path), PIXELS)
    broken = tmp_path / "broken.jpg"
    Image.fromarray(PIXELS).save(broken, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    assert decode_image(broken).shape == PIXELS.shape


def test_16_bit_greyscale_keeps_its_high_byte(tmp_path: Path) -> None:
    grey = np.arange(0, 65536, 1024, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    expected = (grey >> 8).astype(np.uint8)
    np.testing.assert_array_equal(decode_image(tmp_path / "g.png", mode="L"), expected)
    np.testing.assert_array_equal(
        decode_image(tmp_path / "g.png"), np.repeat(expected[..., None], 3, -1)
    )


@pytest.mark.parametrize(
    ("degrees", "hflip", "vflip", "expected"),
    [
        (0, False, False, PIXELS),
        (90, False, False, np.rot90(PIXELS, 1)),
        (-90, False, False, np.rot90(PIXELS, -1)),
        (180, False, False, np.rot90(PIXELS, 2)),
        (0, True, False, PIXELS[:, ::-1]),
        (0, False, True, PIXELS[::-1]),
        (90, True, False, np.rot90(PIXELS, 1)[:, ::-1]),
        (-90, True, False, np.rot90(PIXELS, -1)[:, ::-1]),
    ],
)
def test_video_display_matrix_is_applied(
    tmp_path: Path, degrees: int, hflip: bool, vflip: bool, expected: np.ndarray
) -> None:
    """Decoded frames of an mp4 with a display matrix are upright, and the probed size is the
    displayed size."""
    path = write_rotated_mp4(
        tmp_path / "r.mp4", PIXELS[None].repeat(2, 0), degrees, hflip=hflip, vflip=vflip
    )
    info = probe_video(path)
    assert (info.width, info.height, info.frames) == (expected.shape[1], expected.shape[0], 2)
    with av.open(str(path)) as c:
        frames = [frame_to_rgb8(f) for f in c.decode(video=0)]
    assert len(frames) == 2
    for got in frames:
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)


def test_crop_is_taken_from_the_stored_picture_before_turning(tmp_path: Path) -> None:
    path = write_rotated_mp4(tmp_path / "r.mp4", PIXELS[None], -90)
    with av.open(str(path)) as c:
        got = frame_to_rgb8(next(c.decode(video=0)), crop=(9, 5))
    np.testing.assert_array_equal(got, np.rot90(PIXELS[:5, :9], -1))


def test_unsupported_display_matrix_is_refused(tmp_path: Path) -> None:
    path = write_rotated_mp4(tmp_path / "r45.mp4", PIXELS[None], 45)
    with pytest.raises(FrameError, match=r"r45\.mp4: unsupported display matrix"):
        probe_video(path)
    with av.open(str(path)) as c, pytest.raises(FrameError, match="quarter turns"):
        display_orientation(next(c.decode(video=0)))


def test_exif_table_covers_the_eight_orientations() -> None:
    assert sorted(EXIF_ORIENTATIONS) == list(range(1, 9))
    assert len(set(EXIF_ORIENTATIONS.values())) == 8
