"""genprop-app uploads: what is accepted, and the message for what is refused."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genprop_app.uploads import (
    Limits,
    UploadError,
    list_toy_cases,
    load_edited_frame,
    load_toy_case,
    load_video_upload,
)


def _png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def test_mp4_upload_decodes_every_frame(toy) -> None:
    video = load_video_upload(toy.mp4, Limits())
    assert video.frames.shape == (5, 32, 32, 3)
    assert video.fps == pytest.approx(8)
    assert video.name == "in.mp4"


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("notes.txt", b"hello", "not a video; upload an mp4, webm or mov"),
        ("clip.mp4", b"\x00garbage" * 50, "^clip.mp4: not a readable video; upload an mp4"),
        ("frames.zip", b"not a zip", "frames.zip: not a readable zip"),
    ],
)
def test_bad_files_are_refused_with_a_message(tmp_path, name, data, expected) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UploadError, match=expected) as err:
        load_video_upload(path, Limits())
    assert str(tmp_path) not in str(err.value), "the page never shows the server's paths"


def test_too_long_and_too_large_videos_are_refused(toy) -> None:
    with pytest.raises(UploadError, match="more than 3 frames is too long"):
        load_video_upload(toy.mp4, Limits(max_frames=3))
    with pytest.raises(UploadError, match="frames of 32x32 are too large"):
        load_video_upload(toy.mp4, Limits(max_side=16))
    with pytest.raises(UploadError, match="MB is too large"):
        load_video_upload(toy.mp4, Limits(max_upload_bytes=100))


def test_zip_of_frames_is_read_in_name_order_without_extracting(tmp_path, toy) -> None:
    path = tmp_path / "frames.zip"
    with zipfile.ZipFile(path, "w") as zf:
        # Member names that would escape a folder are only ever read, never written out.
        for t in (2, 0, 1):
            zf.writestr(f"../../frames/{t:05d}.png", _png(toy.frames[t]))
        zf.writestr("readme.txt", "ignored")
    video = load_video_upload(path, Limits())
    assert np.array_equal(video.frames, toy.frames[:3])
    assert not (tmp_path.parent / "frames").exists()
    with pytest.raises(UploadError, match="more than 2 frames"):
        load_video_upload(path, Limits(max_frames=2))


def test_zip_limits_are_checked_before_decoding(tmp_path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("00000.png", b"\x00" * (4 << 20))  # 4 MB of zeros, a few KB compressed
    assert path.stat().st_size < 64 << 10
    with pytest.raises(UploadError, match=r"unpack to 4\.0 MB"):
        load_video_upload(path, Limits(max_upload_bytes=1 << 20))
    mixed = tmp_path / "mixed.zip"
    with zipfile.ZipFile(mixed, "w") as zf:
        zf.writestr("a.png", _png(np.zeros((4, 4, 3), np.uint8)))
        zf.writestr("b.png", _png(np.zeros((4, 6, 3), np.uint8)))
    with pytest.raises(UploadError, match="differ in size"):
        load_video_upload(mixed, Limits())


def test_edited_frame_must_fit_the_video(tmp_path, toy) -> None:
    assert load_edited_frame(toy.edit_png, (32, 32), Limits()).shape == (32, 32, 3)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(small)
    with pytest.raises(UploadError, match=r"small\.png: the edited frame is 24x20 but"):
        load_edited_frame(small, (32, 32), Limits())
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(wide)
    assert load_edited_frame(wide, (32, 32), Limits()).shape == (40, 48, 3)
    text = tmp_path / "edit.png"
    text.write_text("not an image")
    with pytest.raises(UploadError, match="not a readable image"):
        load_edited_frame(text, (32, 32), Limits())


def test_toy_cases_are_listed_and_loaded(toy_cases: Path, tmp_path) -> None:
    refs = list_toy_cases(toy_cases)
    assert [r.id for r in refs] == ["removal_000", "tracking_000"]
    case = load_toy_case(refs[0], Limits())
    assert case.task == "removal" and case.video.frames.shape == (5, 32, 32, 3)
    assert case.first.shape == (32, 32, 3)
    with pytest.raises(UploadError, match="case removal_000: more than 4 frames"):
        load_toy_case(refs[0], Limits(max_frames=4))
    assert list_toy_cases(None) == [] and list_toy_cases(tmp_path) == []
