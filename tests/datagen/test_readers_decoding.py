"""No silently wrong pixels: every image mode decodes to the right 8-bit RGB, greyscale masks
follow one documented rule, and numeric fields / records refuse absurd values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from synth_datasets import make_vos, write_png16
from synth_records import make_record

from datagen.readers import open_reader
from datagen.readers.fields import FieldError, as_float, as_id, as_int
from datagen.readers.frames import read_rgb
from datagen.readers.vos import greyscale_ids
from datagen.record import BadVideo, VideoRecord

RNG = np.random.default_rng(0)
GREY16 = RNG.integers(0, 65536, (16, 20), dtype=np.uint16)
RGB16 = RNG.integers(0, 65536, (16, 20, 3), dtype=np.uint16)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("grey16 (PIL I;16)", np.repeat((GREY16 >> 8).astype(np.uint8)[..., None], 3, -1)),
        ("grey16 (written)", np.repeat((GREY16 >> 8).astype(np.uint8)[..., None], 3, -1)),
        ("rgb16", (RGB16 >> 8).astype(np.uint8)),
        ("grey+alpha16", np.repeat((GREY16 >> 8).astype(np.uint8)[..., None], 3, -1)),
        ("rgba16", (RGB16 >> 8).astype(np.uint8)),
    ],
)
def test_16_bit_frames_scale_instead_of_clipping(tmp_path, case: str, expected) -> None:
    """A 16-bit PNG frame keeps its high byte (value / 257): PIL's own conversion of 16-bit
    greyscale clips everything above 255 to white."""
    path = tmp_path / "f.png"
    if case == "grey16 (PIL I;16)":
        Image.fromarray(GREY16).save(path)
    elif case == "grey16 (written)":
        write_png16(path, GREY16)
    elif case == "rgb16":
        write_png16(path, RGB16)
    elif case == "grey+alpha16":
        write_png16(path, np.stack([GREY16, GREY16[::-1]], -1))
    else:
        write_png16(path, np.concatenate([RGB16, GREY16[..., None]], -1))
    got = read_rgb(path, size=(20, 16))
    assert got.dtype == np.uint8 and got.shape == (16, 20, 3)
    assert np.array_equal(got, expected)


def test_vos_reader_decodes_16_bit_and_palette_frames(tmp_path) -> None:
    root = make_vos(tmp_path)
    frames = root / "JPEGImages" / "seq"
    write_png16(frames / "00000.jpg", RGB16)  # a PNG under a .jpg name, as found in the wild
    Image.fromarray(GREY16).save(frames / "00001.jpg", format="PNG")
    pal = Image.fromarray((GREY16 >> 8).astype(np.uint8)).convert("RGB").quantize(16)
    pal.save(frames / "00002.jpg", format="PNG")
    grey8 = Image.fromarray((GREY16 >> 8).astype(np.uint8))
    Image.merge("LA", [grey8, grey8]).save(frames / "00003.jpg", format="PNG")
    got = list(open_reader("vos", root=root).load("seq").frames())
    assert np.array_equal(got[0], RGB16 >> 8)
    assert np.array_equal(got[1][..., 1], GREY16 >> 8)
    assert np.array_equal(got[2], np.asarray(pal.convert("RGB")))
    assert np.array_equal(got[3][..., 0], GREY16 >> 8)


def _square(blur: bool) -> np.ndarray:
    grey = np.zeros((16, 20), np.float64)
    grey[4:12, 5:15] = 255
    if blur:  # anti-aliased edges: a 3x3 box blur gives many grey levels
        pad = np.pad(grey, 1)
        grey = sum(pad[i : i + 16, j : j + 20] for i in range(3) for j in range(3)) / 9
    return np.round(grey).astype(np.uint8)


@pytest.mark.parametrize(
    ("case", "objects"),
    [
        ("binary 0/255", {1: 80}),
        ("anti-aliased", {1: int((_square(True) >= 128).sum())}),
        ("id map 0/1/2", {1: 40, 2: 40}),
        ("id map with void", {1: 40, 2: 40}),
    ],
)
def test_greyscale_masks_follow_one_rule(tmp_path, case: str, objects: dict[int, int]) -> None:
    """0/255 and anti-aliased greyscale masks are one object (threshold 128), never one object
    per grey level; small values (with 255 void) are an id map."""
    if case == "binary 0/255":
        grey = _square(False)
    elif case == "anti-aliased":
        grey = _square(True)
        assert len(np.unique(grey)) > 5
    else:
        grey = np.zeros((16, 20), np.uint8)
        grey[4:12, 5:10], grey[4:12, 10:15] = 1, 2
        if case == "id map with void":
            grey[0] = 255
    root = make_vos(tmp_path)
    for i in range(4):
        Image.fromarray(grey).save(root / "Annotations" / "seq" / f"{i:05d}.png")
    rec = open_reader("vos", root=root).load("seq")
    assert {int(o.object_id): int(o.mask(0).sum()) for o in rec.objects} == objects
    assert len(greyscale_ids(np.arange(256, dtype=np.uint8)[None]).nonzero()[1]) == 128


def test_fields_refuse_absurd_numbers() -> None:
    for bad in (math.nan, math.inf, 1.5, True, "3", None, [3]):
        with pytest.raises(FieldError, match=r"f\.json: x: expected an integer"):
            as_int(bad, where="f.json: x")
    assert as_int(483.0, where="w") == 483 and as_int(10**400, where="w") == 10**400
    with pytest.raises(FieldError, match="<= 5"):
        as_int(10**400, where="w", maximum=5)
    for bad in (math.nan, -math.inf, 10**400, 0, -1, "1", False):
        with pytest.raises(FieldError, match=r"expected a (finite )?number"):
            as_float(bad, where="w", minimum=0, maximum=1000)
    assert as_id(7.0, where="w") == "7" and as_id("vid", where="w") == "vid"
    for bad in ("", "a\nb", "x" * 1000, 1e30, math.nan, [1], {"a": 1}):
        with pytest.raises(FieldError):
            as_id(bad, where="w")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fps", math.nan, "fps = nan"),
        ("fps", 0.0, "fps = 0.0"),
        ("width", 0, "width = 0"),
        ("height", 2.5, "height = 2.5"),
        ("frame_indices", (0, 2, 1), "strictly increasing"),
        ("frame_indices", (), "one or more"),
        ("annotated", (0, 99), "annotated holds indices outside"),
    ],
)
def test_records_refuse_absurd_numbers(field: str, value: object, message: str) -> None:
    good = make_record("v", T=4)
    fields = {**good.__dict__, field: value}
    with pytest.raises(BadVideo, match=message):
        VideoRecord(**fields)
