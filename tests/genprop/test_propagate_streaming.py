"""Propagation streams: frames are read as needed and written as each chunk finishes, so the
frames alive at once are bounded by the chunk size, never by the video's length."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genprop import GenPropModel, preset
from genprop.cli import propagate as cli
from genprop.inference.outputs import FramesOutput
from genprop.inference.pixel_preserve import ChunkedPixelPreserve
from genprop.inference.preserve import keep_input_pixels
from genprop.inference.propagate import propagate, propagate_frames
from genprop.inference.video_io import (
    Mp4Writer,
    iter_frames,
    open_video,
    write_frames_dir,
    write_video,
)
from genprop.sampling_options import PreserveConfig


def _video(t: int, h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


class CountingFrames:
    """Yields copies of a video's frames, counting those read and those still alive."""

    def __init__(self, video: np.ndarray) -> None:
        self.video, self.read, self.alive = video, 0, 0

    def _freed(self) -> None:
        self.alive -= 1

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self.video:
            frame = frame.copy()
            weakref.finalize(frame, self._freed)
            self.read += 1
            self.alive += 1
            yield frame


def test_chunks_come_out_before_the_input_is_read_and_frames_alive_stay_bounded(tiny_model):
    # cpu_test clips have 4 frames: 14 frames are 5 chunks (1 + 3 + 3 + 3 + 3 + 1 padded).
    F, video = tiny_model.config.num_frames, _video(14)
    frames = CountingFrames(video)
    seen = []
    for chunk in propagate_frames(tiny_model, frames, video[0], "removal", steps=1):
        seen.append((chunk.start, len(chunk.video), frames.read, frames.alive))
    starts = [s for s, *_ in seen]
    assert starts == [0, 4, 7, 10, 13]
    assert sum(n for _, n, *_ in seen) == len(video)
    # The first chunk is out after reading one chunk and one frame of look-ahead, not the video.
    assert seen[0][2] == F + 1 < len(video)
    for start, n, read, alive in seen:
        assert read - (start + n) <= F  # never more than one chunk ahead of the output
        assert alive <= F + 1  # input frames held at once: one window, whatever the length


def test_streamed_chunks_are_propagate_with_or_without_a_frame_count(tiny_model):
    video = _video(9, seed=3)
    first = video[0].copy()
    first[2:6, 3:9] = 255
    cfg = PreserveConfig(mode="pixel", source="change", threshold=0.05, link_radius=1)
    whole = propagate(tiny_model, video, first, "removal", steps=1, preserve=cfg)
    calls: list[tuple[int, int]] = []
    chunks = list(
        propagate_frames(
            tiny_model,
            iter(video),
            first,
            "removal",
            steps=1,
            preserve=cfg,
            progress=lambda done, total: calls.append((done, total)),
        )
    )
    np.testing.assert_array_equal(np.concatenate([c.video for c in chunks]), whole.video)
    np.testing.assert_array_equal(np.concatenate([c.masks for c in chunks]), whole.masks)
    # Without a frame count the progress total grows with what has been read, ending exact.
    assert calls[-1] == (3, 3) and all(d <= t for d, t in calls)


def test_a_frame_of_another_size_is_refused_naming_it(tiny_model):
    video = _video(6)
    frames = [*video[:4], video[4, :10]]
    with pytest.raises(ValueError, match="frame 4"):
        list(propagate_frames(tiny_model, frames, video[0], "edit", steps=1))


PRESERVES = [
    PreserveConfig(mode="pixel"),
    PreserveConfig(mode="pixel", source="change", threshold=0.1, opening=0),
    PreserveConfig(mode="pixel", source="change", threshold=0.1, link_radius=1),
    PreserveConfig(mode="pixel", source="union", threshold=0.05, link_radius=2, blur=0.0),
    PreserveConfig(mode="pixel", source="change", fixed_region_tasks=["removal"]),
]


@pytest.mark.parametrize("preserve", PRESERVES)
@pytest.mark.parametrize("fixed", [False, True])
def test_chunked_pixel_preservation_is_the_whole_video_composite(preserve, fixed):
    rng = np.random.default_rng(7)
    video = _video(10, 24, 24, seed=1)
    result = video.copy()
    # An edit that moves frame by frame, a far change that appears late, and speckle.
    for t in range(10):
        result[t, 4 + t : 10 + t, 3:9] = 255
    result[6:, 18:22, 18:22] = 0
    result[rng.random(result.shape[:3]) < 0.02] = 128
    masks = torch.from_numpy(rng.random(video.shape[:3]).astype(np.float32))
    whole = keep_input_pixels(result, video, masks, preserve, fixed=fixed)
    for cuts in ([0, 1, 4, 7, 10], [0, 3, 4, 10], [0, 10]):
        keep = ChunkedPixelPreserve(preserve, fixed=fixed)
        parts = [keep(result[a:b], video[a:b], masks[a:b]) for a, b in pairwise(cuts)]
        np.testing.assert_array_equal(np.concatenate(parts), whole, err_msg=f"cuts {cuts}")


def test_mp4_writer_appending_chunks_is_write_video(tmp_path: Path):
    video = _video(7, 10, 14, seed=2)
    write_video(tmp_path / "whole.mp4", video, 8, codec="lossless")
    with Mp4Writer(tmp_path / "parts.mp4", 8, codec="lossless") as w:
        for part in (video[:1], video[1:4], video[4], video[5:]):
            w.write(part)
    whole = np.stack(list(iter_frames(tmp_path / "whole.mp4")))
    parts = np.stack(list(iter_frames(tmp_path / "parts.mp4")))
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(parts, video)


def test_the_cli_writes_each_chunk_before_reading_the_whole_video(tmp_path, monkeypatch):
    video = _video(14, 16, 16, seed=4)
    write_frames_dir(tmp_path / "frames", video)
    Image.fromarray(video[0]).save(tmp_path / "edit.png")
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "model")
    reads: list[int] = []

    def counting_open_video(path, **kw):
        stream = open_video(path, **kw)

        def counted():
            for frame in stream:
                reads.append(1)
                yield frame

        return dataclasses.replace(stream, frames=counted())

    written: list[tuple[str, int, int]] = []
    original_write = FramesOutput.write

    def recording_write(self, frames):
        written.append((self.flag, len(frames), len(reads)))
        original_write(self, frames)

    monkeypatch.setattr(cli, "open_video", counting_open_video)
    monkeypatch.setattr(FramesOutput, "write", recording_write)
    argv = ["--model", tmp_path / "model", "--video", tmp_path / "frames", "--first-frame"]
    argv += [tmp_path / "edit.png", "--task", "removal", "--steps", "1"]
    argv += ["--out", tmp_path / "out", "--masks-out", tmp_path / "masks"]
    assert cli.main([str(a) for a in argv]) == 0
    video_writes = [(n, r) for flag, n, r in written if flag == "--out"]
    assert [n for n, _ in video_writes] == [4, 3, 3, 3, 1]
    assert video_writes[0][1] < len(video)  # the first chunk was written early
    assert len([f for f, *_ in written if f == "--masks-out"]) == 5
    assert len(list((tmp_path / "out").glob("*.png"))) == 14
