"""mp4 + masks folder reader on the real E2FGVI schoolgirls sample, and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from datagen.dryrun import dry_run
from datagen.readers import open_reader
from datagen.record import BadVideo, DatasetError
from datagen.runner import run_job

CONF = str(Path(__file__).resolve().parents[2] / "conf" / "datagen")


@pytest.fixture
def sample_dir(shared_data: Path) -> Path:
    d = shared_data / "mp4_masks"
    if not (d / "schoolgirls.mp4").is_file():
        pytest.skip(f"{d}/schoolgirls.mp4 absent (real sample data not available)")
    return d


def linked(tmp_path: Path, sample_dir: Path, mask_dir_name: str = "schoolgirls_mask") -> Path:
    """A root holding a copy of schoolgirls.mp4 (links out of the dataset folder are refused)
    and an empty mask folder ``mask_dir_name``."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copyfile(sample_dir / "schoolgirls.mp4", root / "schoolgirls.mp4")
    (root / mask_dir_name).mkdir()
    return root


def write_masks(d: Path, count: int, size: tuple[int, int], mode: str = "L") -> None:
    """``count`` masks of ``size = (W, H)``: a 0/255 square in ``L``, or plain ``mode`` images."""
    for i in range(count):
        arr = np.zeros((size[1], size[0]), np.uint8)
        arr[10:50, 20 + i : 80 + i] = 255
        im = Image.fromarray(arr, mode="L") if mode == "L" else Image.new(mode, size)
        im.save(d / f"{i:05d}.png")


def test_real_schoolgirls(sample_dir: Path) -> None:
    reader = open_reader("mp4_masks", root=sample_dir)
    assert reader.list_videos() == ["schoolgirls"]
    rec = reader.load("schoolgirls")
    assert (rec.source, rec.width, rec.height, rec.fps) == ("mp4_masks", 432, 240, 24.0)
    assert rec.num_frames == 80 and rec.annotated == tuple(range(80))
    assert [o.object_id for o in rec.objects] == [str(i) for i in range(1, 8)]
    for i in (0, 41, 79):
        png = np.array(Image.open(sample_dir / "schoolgirls_mask" / f"{i:05d}.png"))
        for obj in rec.objects:
            m = obj.mask(i)
            expected = png == int(obj.object_id)
            assert (m is None and not expected.any()) or int(m.sum()) == int(expected.sum())
    assert int(rec.objects[0].mask(10).sum()) == 2039  # palette id 1 on 00010.png
    with av.open(str(sample_dir / "schoolgirls.mp4")) as c:
        ref = [f.to_ndarray(format="rgb24") for _, f in zip(range(6), c.decode(video=0))]
    frames = list(rec.frames([5, 0, 5]))  # out of order and repeated
    assert [f.shape for f in frames] == [(240, 432, 3)] * 3
    assert (frames[0] == ref[5]).all() and (frames[1] == ref[0]).all()


def test_dry_run_and_job_on_schoolgirls(sample_dir: Path, tmp_path: Path) -> None:
    summary = dry_run(open_reader("mp4_masks", root=sample_dir), progress=False)
    assert (summary["videos"], summary["objects"], summary["frames_checked"]) == (1, 7, 80)
    assert summary["problems"] == 0
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "genprop_data",
            [
                "source=mp4_masks",
                f"source.root={sample_dir}",
                f"output_dir={tmp_path / 'out'}",
                "num_samples=3",
                "samples_per_shard=3",
                "clip.frames=4",
                "clip.size=[32,48]",
                "encode.codec=lossless",
                "ray.enabled=false",
                "progress=false",
            ],
        )
    run_job(cfg)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["samples"] == 3 and manifest["errors"] == 0


def test_masks_folder_alias_and_binary_masks(sample_dir: Path, tmp_path: Path) -> None:
    root = linked(tmp_path, sample_dir, "schoolgirls_masks")
    write_masks(root / "schoolgirls_masks", 80, (432, 240))
    rec = open_reader("mp4_masks", root=root).load("schoolgirls")
    assert [(o.object_id, len(o.present)) for o in rec.objects] == [("1", 80)]
    assert int(rec.objects[0].mask(3).sum()) == 40 * 60


@pytest.mark.parametrize(
    ("count", "size", "mode", "expected"),
    [
        (79, (432, 240), "L", "79 mask PNGs for 80 frames"),
        (80, (200, 100), "L", "mask is 200x100, expected 432x240"),
        (80, (432, 240), "RGB", "unsupported mask PNG mode 'RGB'"),
    ],
)
def test_bad_mask_folders(
    sample_dir: Path,
    tmp_path: Path,
    count: int,
    size: tuple[int, int],
    mode: str,
    expected: str,
) -> None:
    root = linked(tmp_path, sample_dir)
    write_masks(root / "schoolgirls_mask", count, size, mode)
    with pytest.raises(BadVideo, match=expected) as info:
        open_reader("mp4_masks", root=root).load("schoolgirls")
    assert str(root / "schoolgirls_mask") in info.value.reason  # names the folder or file


def test_missing_mask_folder_bad_video_and_bad_root(sample_dir: Path, tmp_path: Path) -> None:
    root = linked(tmp_path, sample_dir)
    (root / "schoolgirls_mask").rmdir()
    (root / "broken.mp4").write_bytes(b"not a video")
    (root / "broken_mask").mkdir()
    reader = open_reader("mp4_masks", root=root)
    assert reader.list_videos() == ["broken", "schoolgirls"]
    with pytest.raises(BadVideo, match="no mask folder"):
        reader.load("schoolgirls")
    with pytest.raises(BadVideo, match=r"broken\.mp4: unreadable video"):
        reader.load("broken")
    with pytest.raises(BadVideo, match="no video"):
        reader.load("../root/schoolgirls")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no <name>\.mp4 files"):
        open_reader("mp4_masks", root=tmp_path / "empty")
    with pytest.raises(DatasetError, match="bad options"):
        open_reader("mp4_masks", root=root, resolution="480p")
