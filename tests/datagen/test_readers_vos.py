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


def test_object_ids_scanned_once_per_file_version(tmp_path: Path, monkeypatch) -> None:
    import os

    import datagen.readers.vos as vos

    decoded: list[Path] = []
    real = vos.read_id_map

    def counting(path: Path, size: tuple[int, int], tolerance: int = 2) -> np.ndarray:
        decoded.append(path)
        return real(path, size, tolerance)

    monkeypatch.setattr(vos, "read_id_map", counting)
    reader = open_reader("vos", root=make_vos(tmp_path))
    first = reader.load("seq")
    assert len(decoded) == 4  # one decode per mask PNG to find the ids
    again = reader.load("seq")
    assert len(decoded) == 4  # cached: no PNG decoded again
    assert [(o.object_id, o.present) for o in again.objects] == [
        (o.object_id, o.present) for o in first.objects
    ]
    # A rewritten mask (new mtime) is scanned again: object 2 now also on frame 1.
    png = tmp_path / "Annotations" / "seq" / "00001.png"
    ids = np.array(Image.open(png))
    ids[9:14, 10:18] = 2
    im = Image.frombytes("P", (20, 16), ids.tobytes())
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)
    im.save(png)
    st = png.stat()
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = reader.load("seq")
    assert len(decoded) == 5 and decoded[-1] == png
    assert changed.objects[1].present == (0, 1, 2)


def test_sample_builder_loads_each_record_once_and_builds_the_same_samples(tmp_path) -> None:
    from test_recipe_binding import real_recipes

    from datagen.augment import AugmentConfig, ClipAugment
    from datagen.plan import make_plan
    from datagen.sample_builder import BuildConfig, SampleBuilder

    root = make_vos(tmp_path / "a", "a", frames=6, width=32, height=24)
    make_vos(root, "b", frames=6, width=32, height=24)
    reader = open_reader("vos", root=root)
    loads: list[str] = []

    def counting_load(video_id: str):
        loads.append(video_id)
        return reader.load(video_id)

    def builder(cache: int) -> SampleBuilder:
        return SampleBuilder(
            load=counting_load,
            video_ids=reader.list_videos(),
            recipes=real_recipes(),
            augment=ClipAugment(AugmentConfig()),
            cfg=BuildConfig(frames=3, size=(16, 16), min_area=0.0, max_area=1.0),
            record_cache=cache,
        )

    plans = [
        p
        for s in make_plan(
            ["a", "b"],
            num_samples=10,
            samples_per_shard=5,
            mix={"removal": 1, "edit": 1, "insertion": 1, "tracking": 1, "outpainting": 1},
            tasks=None,
            seed=3,
            partner_tasks={"removal"},
        )
        for p in s.samples
    ]
    with_cache = builder(8)
    cached = [with_cache.build(p).sample for p in plans]
    assert sorted(loads) == ["a", "b"]  # each record loaded once for all attempts and samples
    loads.clear()
    without = builder(0)
    uncached = [without.build(p).sample for p in plans]
    assert len(loads) >= len(plans)
    for x, y in zip(cached, uncached, strict=True):
        assert x is not None and y is not None and x.key == y.key and x.meta == y.meta
        for field in ("sce", "first", "target", "mask"):
            assert np.array_equal(getattr(x, field), getattr(y, field)), field
