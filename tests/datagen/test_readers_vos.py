"""VOS / DAVIS folder reader on the real DAVIS / Cutie samples and synthetic palette masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from synth_datasets import make_vos

from datagen.readers import open_reader


def test_real_vos_sequences(shared_data: Path) -> None:
    reader = open_reader("vos", root=shared_data / "vos")
    assert reader.list_videos() == ["bmx-trees", "judo", "tennis"]
    bmx = reader.load("bmx-trees")  # JPEG frames, binary L 0/255 masks
    assert (bmx.width, bmx.height, bmx.num_frames, bmx.fps) == (432, 240, 80, None)
    assert bmx.annotated == tuple(range(80))
    assert [o.object_id for o in bmx.objects] == ["1"]
    png = np.array(Image.open(shared_data / "vos/Annotations/bmx-trees/00010.png"))
    m = bmx.objects[0].mask(10)
    assert m.shape == (240, 432) and (m == (png == 255)).all()
    tennis = reader.load("tennis")  # PNG frames
    assert (tennis.num_frames, len(tennis.objects)) == (70, 1)
    frame = next(tennis.frames([69]))
    ref = np.array(Image.open(shared_data / "vos/JPEGImages/tennis/00069.png").convert("RGB"))
    assert (frame == ref).all()


def test_real_judo_sparse_palette_masks(shared_data: Path) -> None:
    rec = open_reader("vos", root=shared_data / "vos").load("judo")
    assert (rec.width, rec.height, rec.num_frames) == (854, 480, 16)
    assert rec.annotated == (0, 5, 8, 13)  # masks on 4 of 16 frames only
    # Cutie's example adds one object per annotated frame (palette ids 1..4).
    assert [(o.object_id, o.present) for o in rec.objects] == [
        ("1", (0,)),
        ("2", (5,)),
        ("3", (8,)),
        ("4", (13,)),
    ]
    assert rec.objects[0].mask(1) is None  # frame 1 carries no annotation
    assert int(rec.objects[0].mask(0).sum()) == 53811
    # 00005.png is 853x480 for 854x480 frames: padded with background on the right.
    m = rec.objects[1].mask(5)
    assert m.shape == (480, 854) and int(m.sum()) == 6034 and not m[:, 853].any()
    assert next(rec.frames([15])).shape == (480, 854, 3)


def test_palette_void_is_not_an_object(tmp_path: Path) -> None:
    rec = open_reader("vos", root=make_vos(tmp_path)).load("seq")
    assert [(o.object_id, o.present) for o in rec.objects] == [("1", (0, 1, 2, 3)), ("2", (0, 2))]
    assert int(rec.objects[0].mask(0).sum()) == 36
    assert int(rec.objects[1].mask(0).sum()) == 40
    assert rec.objects[1].mask(1) is None  # annotated frame where object 2 is absent
    assert not any(o.mask(0)[0].any() for o in rec.objects)  # the 255 row is void


def test_davis_resolution_level(tmp_path: Path) -> None:
    make_vos(tmp_path / "flat")
    for sub in ("JPEGImages", "Annotations"):
        shutil.copytree(tmp_path / "flat" / sub, tmp_path / "davis" / sub / "480p")
    reader = open_reader("vos", root=tmp_path / "davis", resolution="480p")
    assert reader.list_videos() == ["seq"]
    assert open_reader("vos", root=tmp_path / "davis").list_videos() == ["seq"]  # auto 480p
    assert reader.load("seq").num_frames == 4


def test_vos_fps_option_and_numbered_frames(tmp_path: Path) -> None:
    make_vos(tmp_path)
    for i in range(4):  # YouTube-VOS names frames 00000, 00005, ...
        for sub, ext in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
            d = tmp_path / sub / "seq"
            (d / f"{i:05d}{ext}").rename(d / f"x{5 * i:05d}{ext}")
    for sub in ("JPEGImages", "Annotations"):
        d = tmp_path / sub / "seq"
        for p in sorted(d.iterdir()):
            p.rename(d / p.name[1:])
    rec = open_reader("vos", root=tmp_path, fps=6.0).load("seq")
    assert rec.fps == 6.0 and rec.frame_indices == (0, 5, 10, 15)
