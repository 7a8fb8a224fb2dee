"""Dataset readers read frames as they are shown: EXIF orientation of JPEG/PNG frames and the
display matrix of mp4s, with masks on the same pixels.

DAVIS / YouTube-VOS annotation PNGs are drawn on the frames as displayed and carry no EXIF, so
a frame stored sideways with an Orientation tag must be turned upright for its mask to fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import ExifTags, Image
from synth_datasets import make_sav, string_rle

from datagen.readers import open_reader

BACKGROUND, OBJECT = (90, 90, 90), (230, 30, 30)


def scene(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """``(H, W, 3)`` grey picture, as displayed, with a red object on ``box = (y0, x0, y1, x1)``."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BACKGROUND
    y0, x0, y1, x1 = box
    img[y0:y1, x0:x1] = OBJECT
    return img


def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((height, width), bool)
    m[box[0] : box[2], box[1] : box[3]] = True
    return m


def red(frame: np.ndarray) -> np.ndarray:
    return (frame[..., 0] > 160) & (frame[..., 1] < 100)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def stored_sideways(displayed: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels that EXIF ``orientation`` 6 (turn clockwise to show) or 8 (turn
    counter-clockwise) shows as ``displayed``."""
    return np.rot90(displayed, 1 if orientation == 6 else -1)


def save_jpeg(path: Path, stored: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif, quality=95)


def save_palette_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.astype(np.uint8).tobytes())
    im.putpalette([0, 0, 0, 128, 0, 0] + [255, 255, 255] * 254)
    im.save(path)


def write_phone_mp4(path: Path, displayed: np.ndarray, frames: int) -> None:
    """A lossless mp4 recorded sideways with the display matrix of a phone held upright (shown
    turned 90 degrees clockwise), showing ``displayed`` on every frame."""
    stored = np.ascontiguousarray(np.rot90(displayed, 1))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=24)
        s.width, s.height, s.pix_fmt = stored.shape[1], stored.shape[0], "rgb24"
        s.options = {"qp": "0", "preset": "ultrafast"}
        s.set_display_rotation(-90)
        for _ in range(frames):
            c.mux(s.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        c.mux(s.encode(None))


@pytest.mark.parametrize("orientation", [6, 8])
@pytest.mark.parametrize(("height", "width"), [(32, 32), (32, 48)], ids=["square", "wide"])
def test_vos_exif_rotated_jpegs_fit_their_masks(
    tmp_path: Path, orientation: int, height: int, width: int
) -> None:
    """Square frames used to come out sideways under their masks (IoU 0); non-square ones
    were refused for a mask of the wrong size."""
    box = (2, width - 14, 12, width - 2)  # top-right: far from where a sideways frame puts it
    for i in range(2):
        save_jpeg(
            tmp_path / f"JPEGImages/seq/{i:05d}.jpg",
            stored_sideways(scene(height, width, box), orientation),
            orientation,
        )
        save_palette_mask(tmp_path / f"Annotations/seq/{i:05d}.png", box_mask(height, width, box))
    rec = open_reader("vos", root=tmp_path).load("seq")
    assert (rec.width, rec.height) == (width, height)
    mask = rec.objects[0].mask(1)
    frame = next(rec.frames([1]))
    assert frame.shape == (height, width, 3)
    assert iou(red(frame), mask) > 0.9


def test_ytvis_exif_rotated_frames_match_the_declared_size(tmp_path: Path) -> None:
    """A YouTube-VIS video declares its displayed size; its sideways JPEG frames used to be
    refused as 'image is 32x48, expected 48x32'."""
    h, w, box = 32, 48, (4, 30, 14, 44)
    names = [f"v/{i:05d}.jpg" for i in range(2)]
    for name in names:
        save_jpeg(tmp_path / "JPEGImages" / name, stored_sideways(scene(h, w, box), 6), 6)
    doc = {
        "videos": [{"id": 1, "width": w, "height": h, "length": 2, "file_names": names}],
        "annotations": [
            {
                "id": 1,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": [string_rle(box_mask(h, w, box))] * 2,
            }
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps(doc))
    rec = open_reader("ytvis", annotations=ann, frames=tmp_path / "JPEGImages").load("1")
    frame = next(rec.frames([1]))
    assert frame.shape == (h, w, 3)
    assert iou(red(frame), rec.objects[0].mask(1)) > 0.9


def test_mp4_masks_phone_video_is_read_upright(tmp_path: Path) -> None:
    """A portrait phone recording (stored sideways, display matrix) fits masks drawn on the
    video as played; it used to be refused for masks of the wrong size."""
    h, w, box = 48, 32, (3, 18, 15, 30)
    write_phone_mp4(tmp_path / "clip.mp4", scene(h, w, box), 3)
    for i in range(3):
        save_palette_mask(tmp_path / f"clip_mask/{i:05d}.png", box_mask(h, w, box))
    rec = open_reader("mp4_masks", root=tmp_path).load("clip")
    assert (rec.width, rec.height, rec.num_frames) == (w, h, 3)
    frames = list(rec.frames([2, 0]))
    assert [f.shape for f in frames] == [(h, w, 3)] * 2
    np.testing.assert_array_equal(frames[0], scene(h, w, box))
    assert iou(red(frames[1]), rec.objects[0].mask(0)) == 1.0


def test_sav_phone_video_matches_its_declared_size(tmp_path: Path) -> None:
    """SA-V masklets declare the displayed size; a sideways-stored mp4 used to mismatch it."""
    h, w = 24, 32
    make_sav(tmp_path, width=w, height=h)  # masklet box on rows and columns 1..8
    box = (1, 1, 9, 9)
    write_phone_mp4(tmp_path / "sav_000002.mp4", scene(h, w, box), 9)
    rec = open_reader("sav", root=tmp_path).load("sav_000002")
    assert (rec.width, rec.height) == (w, h)
    frame = next(rec.frames([1]))
    np.testing.assert_array_equal(frame, scene(h, w, box))
    assert iou(red(frame), rec.objects[0].mask(1)) == 1.0
