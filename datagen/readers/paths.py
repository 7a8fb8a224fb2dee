"""File access confined to a dataset root.

Every file a reader opens (frames, masks, videos, annotation JSON) goes through these checks
first, so that a dataset cannot make the pipeline read files elsewhere or hang:

- a relative path taken from an annotation file must not be absolute and must not contain
  ``..`` (:func:`safe_join`);
- a file, after following every symbolic link, must lie inside the dataset folder the user
  gave (itself resolved, so a dataset folder that *is* a symlink, e.g. ``JPEGImages -> /disk2/x``,
  is fine; a link *inside* it that points out of it is refused) (:func:`confined_file`);
- a file must be a regular file: a FIFO, socket or device in a frames or masks folder would
  block or never end when opened, so it is refused without being opened.

Datasets assembled from links to files kept elsewhere (a benchmark subset linking sequences
of a full copy) pass ``allow_links_outside=True`` to their reader: the readers then give
``root=None`` here, which keeps every check except the containment one.

Errors are raised as :class:`PathError` with a message naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath


class PathError(ValueError):
    """A path escapes the dataset root, is missing, or is not a regular file."""


def safe_join(root: Path, relative: str, *, where: str) -> Path:
    """Join a path from an annotation file to ``root``, refusing anything that escapes it.

    Rejects absolute paths (POSIX or Windows style) and any ``..`` component. Symbolic links
    are checked when the file is opened (:func:`confined_file`).
    """
    if not isinstance(relative, str) or not relative:
        raise PathError(f"{where}: expected a relative file path, got {relative!r:.80}")
    if "\x00" in relative:
        raise PathError(f"{where}: path {relative!r:.80} contains a NUL character")
    posix, win = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or win.is_absolute() or win.drive or relative.startswith("\\"):
        raise PathError(f"{where}: path {relative!r} is absolute; expected one relative to {root}")
    if ".." in posix.parts or ".." in win.parts:
        raise PathError(f"{where}: path {relative!r} escapes the dataset root {root} ('..')")
    return root / posix


def resolved_root(root: Path, *, allow_links_outside: bool = False) -> Path | None:
    """``root`` with every symbolic link followed (the folder files must stay inside), or
    ``None`` when links out of it are allowed."""
    return None if allow_links_outside else Path(os.path.realpath(root))


def _check_inside(path: Path, real: Path, root: Path | None, what: str) -> None:
    if root is not None and real != root and root not in real.parents:
        raise PathError(
            f"{path}: {what} resolves to {real}, outside the dataset folder {root} (symbolic "
            "link out of the dataset; pass the reader option allow_links_outside=true to allow)"
        )


def confined_file(path: Path, root: Path | None, *, what: str = "file") -> Path:
    """Check that ``path`` is a regular file inside ``root`` once links are followed.

    Args:
        path: the file to open.
        root: the dataset folder, already resolved with :func:`resolved_root`; ``None`` allows
            links out of it.
        what: what the file is, for the message (``"frame"``, ``"mask"``, ``"video"``).

    Returns:
        ``path`` itself (open it by this name, so messages show the dataset's own names).

    Raises:
        PathError: missing, a link resolving outside ``root``, or not a regular file (FIFO,
            socket, device, folder).
    """
    real = Path(os.path.realpath(path))
    _check_inside(path, real, root, what)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError as e:
        raise PathError(f"{path}: {what} not found") from e
    except OSError as e:
        raise PathError(f"{path}: cannot read {what} ({e.strerror})") from e
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (FIFO, socket or device)"
        raise PathError(f"{path}: {what} is {kind}; refusing to open it")
    return path


def confined_dir(path: Path, root: Path | None, *, what: str = "folder") -> Path:
    """Check that ``path`` is a folder inside ``root`` (``None``: anywhere) once links are
    followed.

    Raises:
        PathError: missing, not a folder, or a link resolving outside ``root``.
    """
    real = Path(os.path.realpath(path))
    _check_inside(path, real, root, what)
    if not real.is_dir():
        raise PathError(f"{path}: {what} not found or not a folder")
    return path


def list_files(
    folder: Path, root: Path | None, extensions: tuple[str, ...], *, what: str
) -> list[Path]:
    """The files of ``folder`` whose extension (any case) is in ``extensions``, sorted by name.

    Every listed entry is checked without being opened: a symbolic link must resolve to a
    regular file inside ``root``; anything else that is not a regular file (a FIFO, socket,
    device or folder named like an image) is refused rather than skipped, since dropping it
    would silently shift the frame numbering.

    Args:
        folder: a frames or masks folder, already checked with :func:`confined_dir`.
        root: the dataset folder, resolved with :func:`resolved_root` (``None``: anywhere).
        extensions: lower-case extensions with the dot, e.g. ``(".png",)``.
        what: what the files are, for the message (``"frame"``, ``"mask"``).

    Raises:
        PathError: an entry is not a regular file inside ``root``, or ``folder`` is unreadable.
    """
    found: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if os.path.splitext(entry.name)[1].lower() not in extensions:
                    continue
                path = folder / entry.name
                if entry.is_symlink():
                    confined_file(path, root, what=what)
                elif not entry.is_file(follow_symlinks=False):
                    kind = (
                        "a folder" if entry.is_dir(follow_symlinks=False) else "not a regular file"
                    )
                    raise PathError(f"{path}: {what} is {kind}; refusing to open it")
                found.append(path)
    except OSError as e:
        raise PathError(f"{folder}: cannot list {what} files ({e.strerror})") from e
    return sorted(found)
