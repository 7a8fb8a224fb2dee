"""Where ``genprop-propagate`` writes: outputs never over inputs, results written whole.

* :func:`check_output_paths` refuses an output that is an input (the video, the edited first
  frame, the model), lies inside the input frames folder, holds an input, or overlaps another
  output. Paths are compared after resolving symlinks.
* :class:`FramesOutput` writes a result chunk by chunk and puts it in place only at
  :meth:`~FramesOutput.commit`: an ``.mp4`` goes to a hidden temporary file next to it and is
  renamed over the target; a PNG folder goes to a hidden sibling folder that is then swapped in.
  :meth:`~FramesOutput.discard` (after an error) removes what was written and leaves the target
  as it was.
* A result folder holds a small marker file, :data:`MARKER`. An existing target folder is
  replaced only when it is empty or is a previous result (marker + numbered PNGs, nothing else);
  a folder with any other file is refused before anything runs. When a previous result is
  replaced, only its numbered PNGs and marker are deleted, never a file we did not write.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from genprop.inference.video_io import Mp4Writer, write_frames_dir, write_mask_dir

MARKER = ".genprop-result.json"
_OUR_FILE = re.compile(r"\d{5,}\.png")
KINDS = ("frames", "masks")


class OutputPathError(ValueError):
    """An output path collides with an input or another output, holds foreign files, or cannot
    be written; the message names the path and the option."""


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and folder in path.parents


def check_output_paths(inputs: Mapping[str, Path], outputs: Mapping[str, Path]) -> None:
    """Refuse outputs that would overwrite, mix into or delete an input or another output.

    Args:
        inputs: ``{flag: path}`` of what is read, e.g. ``{"--video": ..., "--first-frame": ...}``.
            A folder among them (a frames folder) may not receive outputs either.
        outputs: ``{flag: path}`` of what is written (``None`` values are skipped).

    Raises:
        OutputPathError: naming both flags and both paths.
    """
    ins = {flag: Path(p).resolve() for flag, p in inputs.items() if p is not None}
    outs = {flag: Path(p).resolve() for flag, p in outputs.items() if p is not None}
    for o_flag, out in outs.items():
        for i_flag, src in ins.items():
            if out == src:
                why = "is the same path as"
            elif _inside(src, out):
                why = "is a folder that holds"
            elif _inside(out, src):
                why = "lies inside"
            else:
                continue
            raise OutputPathError(
                f"{o_flag} {out} {why} {i_flag} {src}; write the output somewhere else"
            )
    items = list(outs.items())
    for n, (a_flag, a) in enumerate(items):
        for b_flag, b in items[n + 1 :]:
            if a == b or _inside(a, b) or _inside(b, a):
                raise OutputPathError(
                    f"{a_flag} {a} and {b_flag} {b} overlap; give each output its own path"
                )


def check_result_folder(folder: Path, flag: str) -> None:
    """An existing folder target must be empty or a previous result of ours (see module doc)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise OutputPathError(f"{folder}: {flag} must be a folder, but it is a file")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    if MARKER not in entries:
        raise OutputPathError(
            f"{folder}: {flag} is a folder of files not written by genprop-propagate (no "
            f"{MARKER}); give a new or empty folder"
        )
    foreign = [n for n in entries if n != MARKER and not _OUR_FILE.fullmatch(n)]
    if foreign:
        raise OutputPathError(
            f"{folder}: {flag} holds {foreign[0]!r}, which genprop-propagate did not write; "
            "move it away or give a new folder"
        )


def _sibling(target: Path, tag: str, suffix: str = "") -> Path:
    return target.with_name(f".{target.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


class FramesOutput:
    """One result written chunk by chunk, put in place whole at :meth:`commit`.

    Args:
        target: an ``.mp4`` (frames only) or a folder path for numbered PNGs.
        kind: ``"frames"`` ((N, H, W, 3) uint8 RGB) or ``"masks"`` ((N, H, W) probabilities in
            [0, 1] or bool, written as 0..255 grey PNGs).
        flag: the option naming ``target`` (for messages).
        fps: frame rate of an mp4.
    """

    def __init__(self, target: Path, kind: str, *, flag: str, fps: float = 24.0) -> None:
        self._writer: Mp4Writer | None = None
        self.partial: Path | None = None
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.target, self.kind, self.flag = Path(target).resolve(), kind, flag
        self.mp4 = self.target.suffix.lower() == ".mp4" and not self.target.is_dir()
        if self.mp4 and kind != "frames":
            raise ValueError(f"{target}: {flag} must be a folder")
        if not self.mp4:
            check_result_folder(self.target, flag)
        self.count = 0
        with self._os_errors():
            self.target.parent.mkdir(parents=True, exist_ok=True)
            if self.mp4:
                self.partial = _sibling(self.target, "partial", ".mp4")
                self._writer = Mp4Writer(self.partial, fps)
            else:
                self.partial = _sibling(self.target, "partial")
                self.partial.mkdir()

    @contextmanager
    def _os_errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise OutputPathError(
                f"{self.target}: cannot write the {self.kind} ({e.strerror or e}); "
                f"check {self.flag}"
            ) from e

    def write(self, frames: np.ndarray) -> None:
        """Append ``(N, H, W, 3)`` frames or ``(N, H, W)`` masks."""
        with self._os_errors():
            if self._writer is not None:
                self._writer.write(frames)
            elif self.kind == "frames":
                write_frames_dir(self.partial, frames, start=self.count)
            else:
                write_mask_dir(self.partial, frames, start=self.count)
        self.count += len(frames)

    def commit(self) -> Path:
        """Put the written result at the target (replacing a previous one); return the target."""
        with self._os_errors():
            return self._commit()

    def _commit(self) -> Path:
        if self._writer is not None:
            self._writer.close()
            os.replace(self.partial, self.target)
            return self.target
        marker = {"written_by": "genprop-propagate", "content": self.kind, "files": self.count}
        (self.partial / MARKER).write_text(json.dumps(marker) + "\n")
        old = None
        if self.target.exists():
            check_result_folder(self.target, self.flag)  # unchanged since the start?
            old = _sibling(self.target, "old")
            os.replace(self.target, old)
        os.replace(self.partial, self.target)
        if old is not None:
            _remove_result(old)
        return self.target

    def discard(self) -> None:
        """Remove what was written; the target is left as it was."""
        if self._writer is not None:
            self._writer.abort()
            self.partial.unlink(missing_ok=True)
        elif self.partial is not None and self.partial.is_dir():
            shutil.rmtree(self.partial)  # a fresh folder of ours: everything in it is ours


def _remove_result(folder: Path) -> None:
    """Delete a replaced result: its numbered PNGs and marker only; keep any other file."""
    for p in folder.iterdir():
        if p.name == MARKER or (_OUR_FILE.fullmatch(p.name) and p.is_file()):
            p.unlink()
    try:
        folder.rmdir()
    except OSError:
        print(
            f"genprop-propagate: warning: {folder} kept: it holds files we did not write",
            file=sys.stderr,
        )


class ResultOutputs:
    """The video and the optional mask folders of one run, committed together or discarded.

    ``with ResultOutputs(...) as outs:`` discards every partial output when the block raises;
    call :meth:`commit` at the end of a successful run.
    """

    def __init__(
        self,
        out: Path,
        fps: float,
        *,
        masks_out: Path | None = None,
        regions_out: Path | None = None,
    ) -> None:
        self.outputs: dict[str, FramesOutput] = {}
        try:
            self.outputs["--out"] = FramesOutput(out, "frames", flag="--out", fps=fps)
            for flag, folder in (("--masks-out", masks_out), ("--regions-out", regions_out)):
                if folder is not None:
                    self.outputs[flag] = FramesOutput(folder, "masks", flag=flag)
        except BaseException:
            self.discard()
            raise

    def write(self, video: np.ndarray, masks: np.ndarray, regions: np.ndarray) -> None:
        """Append a chunk: ``(N, H, W, 3)`` frames, ``(N, H, W)`` probabilities and regions."""
        for flag, frames in (("--out", video), ("--masks-out", masks), ("--regions-out", regions)):
            if flag in self.outputs:
                self.outputs[flag].write(frames)

    def commit(self) -> dict[str, Path]:
        """Put every output in place; returns ``{flag: path}``."""
        return {flag: o.commit() for flag, o in self.outputs.items()}

    def discard(self) -> None:
        """Remove every partial output."""
        for o in self.outputs.values():
            o.discard()

    def __enter__(self) -> ResultOutputs:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.discard()
