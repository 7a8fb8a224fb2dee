"""Who may write into a folder: an owner marker per output folder and one run at a time.

Every GenProp command that writes a folder (``genprop-data``, ``genprop-cache``,
``genprop-toyworld``, ``genprop-train``'s run folder) goes through :func:`owned_folder`:

1. **Ownership.** The folder must be new, empty, or hold the marker :data:`MARKER` that the same
   tool wrote (or, for folders written before markers existed, be recognised as the tool's own
   by its ``adopt`` callback). Any other folder is refused (:class:`FolderError`, one line naming
   the folder) unless the caller passes ``overwrite``; even then the tool only touches the files
   it makes itself.
2. **One config per folder.** The marker records the identity (hash) of the config that made the
   folder; a run of another config is refused, before any work, unless ``overwrite``.
3. **One run at a time.** :class:`FolderLock` holds ``fcntl.flock`` on :data:`LOCK_FILE` inside
   the folder for the whole run, so the kernel releases it when the process ends, however it
   ends (``kill -9`` included). The file holds the holder's pid, host and command for the
   refusal message; on file systems without ``flock`` the file itself is the lock, and a lock of
   a pid that no longer runs on this host is stale and taken over.

Temporaries of killed runs are removed only when their names follow the tool's own scheme
(:func:`remove_own_temporaries`); anything else in the folder is left alone.

This module imports only the standard library and :mod:`contracts`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.jobs import pid_alive, write_json_atomic
from contracts.jsonfile import read_json_object

MARKER = ".genprop-owner.json"
LOCK_FILE = ".genprop.lock"
MARKER_VERSION = 1
# An ``adopt`` callback's answer for a folder of the tool whose config it cannot tell.
UNKNOWN_CONFIG = "unknown"
_LOCK_BYTES = 4096  # the lock file holds one short JSON line
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_TEMPORARY = re.compile(r"(?P<name>.+)\.tmp-\d+")


class FolderError(ValueError):
    """A folder may not be written by this run; the message is one line naming it."""


def config_identity(config: Mapping[str, Any] | str) -> str:
    """A config's identity: the string itself, or the first 16 hex of the sha256 of a mapping's
    canonical JSON."""
    if isinstance(config, str):
        return config
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class FolderClaim:
    """The outcome of :func:`claim_folder` (or of the read-only :func:`check_folder`).

    Attributes:
        path: the folder.
        tool: the owning command, e.g. ``"genprop-data"``.
        config_hash: this run's config identity (written to the marker).
        previous: the marker found before this run (or the adopted description of a folder
            written before markers existed); ``None`` for a new or empty folder.
        fresh: the folder was new or empty.
        taken_over: ``overwrite`` let this run take a folder that was not its tool's, or that
            another config made.
    """

    path: Path
    tool: str
    config_hash: str
    previous: dict[str, Any] | None = None
    fresh: bool = False
    taken_over: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    _written: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    def known_outputs(self) -> set[str]:
        """Output names an earlier run of this tool recorded in the marker (none when fresh)."""
        if not self.previous:
            return set()
        outputs = self.previous.get("outputs")
        return {str(o) for o in outputs} if isinstance(outputs, list) else set()

    def record_outputs(self, names: Iterable[str]) -> None:
        """Add ``names`` to the outputs the marker lists as this tool's own files."""
        current = {str(o) for o in self._written.get("outputs") or []}
        if not self.taken_over:
            current |= self.known_outputs()
        self._write({"outputs": sorted(set(names) | current)})

    def _write(self, extra: Mapping[str, Any] | None = None) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        keep = self.previous if self.previous and not self.taken_over else {}
        data = {
            "tool": self.tool,
            "version": MARKER_VERSION,
            "config_hash": self.config_hash,
            "created": keep.get("created") or now,
            "updated": now,
            **self.details,
        }
        outputs = self._written.get("outputs", keep.get("outputs"))
        if isinstance(outputs, list):
            data["outputs"] = outputs
        data.update(extra or {})
        try:
            write_json_atomic(self.marker, data)
        except OSError as e:
            raise FolderError(
                f"{self.path}: cannot write the owner marker {MARKER} ({e.strerror or e})"
            ) from None
        self._written = data


def _entries(folder: Path) -> list[str]:
    """The folder's entries other than our marker and lock file."""
    return sorted(p.name for p in folder.iterdir() if p.name not in (MARKER, LOCK_FILE))


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The owner marker of ``folder``; ``None`` when there is none.

    Raises:
        FolderError: the marker is unreadable (then the folder counts as nobody's).
    """
    path = folder / MARKER
    if not path.exists():
        return None
    return read_json_object(path, what="owner marker", error=FolderError)


def check_folder(
    path: Path | str,
    *,
    tool: str,
    config: Mapping[str, Any] | str,
    overwrite: bool = False,
    adopt: Callable[[Path], str | None] | None = None,
    what: str = "output_dir",
    overwrite_hint: str = "overwrite=true",
    other_config: Callable[[Path, dict[str, Any]], str] | None = None,
) -> FolderClaim:
    """Decide whether this run may write ``path``, without writing anything.

    Args:
        path: the output folder.
        tool: the command that owns the folder (recorded in the marker).
        config: this run's config identity (see :func:`config_identity`).
        overwrite: take a folder that is not ours, or that another config made.
        adopt: for a folder without marker, the config identity of the tool's own output written
            before markers existed (:data:`UNKNOWN_CONFIG` when it cannot tell), else ``None``.
        what: the option naming the folder, for messages.
        overwrite_hint: how the user passes ``overwrite`` (``overwrite=true``, ``--force``).
        other_config: the refusal message for a folder of another config, from the folder and
            its marker (default: both config hashes and the way out).

    Raises:
        FolderError: one line naming the folder and the way out.
    """
    folder = Path(path).expanduser().absolute()
    chash = config_identity(config)
    claim = FolderClaim(folder, tool, chash)
    if not folder.exists():
        claim.fresh = True
        return claim
    if not folder.is_dir():
        raise FolderError(f"{what}: {folder} exists and is not a folder")
    previous = read_marker_or_none(folder)
    if previous is None:
        if not _entries(folder):
            claim.fresh = True
            return claim
        adopted = adopt(folder) if adopt is not None else None
        if adopted is None:
            if not overwrite:
                raise FolderError(
                    f"{what}: {folder} is not empty and was not written by {tool} (no {MARKER}); "
                    f"refusing to write into it: use a new or empty folder, or pass "
                    f"{overwrite_hint} to write {tool}'s files into it (nothing else is touched)"
                )
            claim.taken_over = True
            return claim
        previous = {"tool": tool, "config_hash": adopted, "adopted": True}
    claim.previous = previous
    if previous.get("tool") != tool:
        raise FolderError(
            f"{what}: {folder} belongs to {previous.get('tool')!r} ({MARKER}), not {tool}; "
            "use another folder"
        )
    theirs = previous.get("config_hash")
    if theirs in (chash, UNKNOWN_CONFIG):
        return claim
    if not overwrite:
        if other_config is not None:
            raise FolderError(other_config(folder, previous))
        raise FolderError(
            f"{what}: {folder} holds the output of another {tool} config (config {theirs!r}, "
            f"this run: {chash!r}); use a new {what} or pass {overwrite_hint}"
        )
    claim.taken_over = True
    return claim


def read_marker_or_none(folder: Path) -> dict[str, Any] | None:
    """:func:`read_marker`, with an unreadable or foreign-shaped marker counting as none."""
    try:
        marker = read_marker(folder)
    except FolderError:
        return None
    if marker is None or not isinstance(marker.get("tool"), str):
        return None
    return marker


def claim_folder(
    path: Path | str,
    *,
    tool: str,
    config: Mapping[str, Any] | str,
    overwrite: bool = False,
    details: Mapping[str, Any] | None = None,
    **check: Any,
) -> FolderClaim:
    """:func:`check_folder`, then create the folder and write this run's marker.

    Call it while holding the folder's :class:`FolderLock` (as :func:`owned_folder` does), so
    that two runs cannot both find the folder free.

    Args:
        details: extra fields for the marker (e.g. the config itself, for messages).
        check: the other arguments of :func:`check_folder`.

    Raises:
        FolderError: as :func:`check_folder`, or the marker cannot be written.
    """
    claim = check_folder(path, tool=tool, config=config, overwrite=overwrite, **check)
    claim.details = dict(details or {})
    try:
        claim.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FolderError(f"{claim.path}: cannot create the folder ({e.strerror or e})") from None
    claim._write()
    return claim


@dataclass(frozen=True)
class LockHolder:
    """Who holds a folder's lock, as written in its lock file."""

    pid: int | None
    host: str
    command: str
    since: str

    def __str__(self) -> str:
        where = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        if self.host:
            where += f" on {self.host}"
        since = f"since {self.since}" if self.since else ""
        extra = ", ".join(x for x in (self.command, since) if x)
        return f"{where}{': ' + extra if extra else ''}"


def _read_holder(path: Path) -> LockHolder:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(_LOCK_BYTES) or b"{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid = data.get("pid")
    return LockHolder(
        pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        str(data.get("host") or ""),
        str(data.get("command") or "")[:200],
        str(data.get("since") or ""),
    )


class FolderLock:
    """Exclusive lock of a run on its folder (a context manager; see the module docstring).

    Args:
        folder: the folder (created if missing).
        command: what holds the lock, for the message another run prints.
        wait_s: keep trying this long before refusing (e.g. a requeued job whose previous
            allocation's lock a network file system has not released yet).
        what: the option naming the folder, for messages.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        command: str | None = None,
        wait_s: float = 0.0,
        what: str = "output_dir",
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.command = command or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200]
        self.wait_s = wait_s
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`FolderError` naming the holder's pid."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FolderError(
                f"{self.what}: cannot create {self.folder} ({e.strerror or e})"
            ) from None
        deadline = time.monotonic() + self.wait_s
        while True:
            holder = self._try_flock()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise FolderError(
                    f"{self.what}: {self.folder} is in use by another run ({holder}); wait for it "
                    "to finish or use another folder"
                )
            time.sleep(0.2)

    def _try_flock(self) -> LockHolder | None:
        """Take the lock (``None``) or return who holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise FolderError(
                f"{self.what}: cannot create the lock file {self.path} ({e.strerror or e})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return _read_holder(self.path)
        except OSError as e:
            os.close(fd)
            if e.errno in _NO_FLOCK:
                return self._try_pid_file()
            raise FolderError(f"{self.what}: cannot lock {self.path} ({e.strerror or e})") from None
        # The previous holder may have removed the file between our open and our flock: then we
        # hold a lock on a file nobody else will open; start again with the file at the path.
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self._try_flock()
        try:
            os.ftruncate(fd, 0)
            os.write(fd, self._holder_json())
        except OSError as e:  # e.g. a full disk: leave nothing behind
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(fd)
            raise FolderError(
                f"{self.what}: cannot write the lock file {self.path} ({e.strerror or e})"
            ) from None
        self._fd = fd
        return None

    def _try_pid_file(self) -> LockHolder | None:
        """The lock where ``flock`` is missing: the file, created exclusively, is the lock."""
        holder = _read_holder(self.path)
        if holder.pid is None:  # the empty file our own open created, or garbage
            stale = True
        else:  # a crashed run's lock: its pid no longer runs on this host
            stale = holder.host == socket.gethostname() and not pid_alive(holder.pid)
        if stale:
            self.path.unlink(missing_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return _read_holder(self.path)
        try:
            os.write(fd, self._holder_json())
        except OSError as e:
            self.path.unlink(missing_ok=True)
            os.close(fd)
            raise FolderError(
                f"{self.what}: cannot write the lock file {self.path} ({e.strerror or e})"
            ) from None
        self._fd = fd
        return None

    def _holder_json(self) -> bytes:
        since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        data = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": since}  # fmt: skip
        return (json.dumps(data) + "\n").encode()

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing when not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def owned_folder(
    path: Path | str,
    *,
    tool: str,
    config: Mapping[str, Any] | str,
    overwrite: bool = False,
    command: str | None = None,
    wait_s: float = 0.0,
    details: Mapping[str, Any] | None = None,
    **check: Any,
) -> Iterator[FolderClaim]:
    """Check, lock and claim ``path`` for this run; the lock is held inside the block.

    The read-only check comes first, so a refused folder gets no lock file; the claim is made
    again under the lock (another run may have claimed the folder in between).

    Raises:
        FolderError: the folder is not ours, was made by another config (both unless
            ``overwrite``), or is in use by another run (naming its pid).
    """
    what = check.get("what", "output_dir")
    check_folder(path, tool=tool, config=config, overwrite=overwrite, **check)
    with FolderLock(path, command=command, wait_s=wait_s, what=what):
        yield claim_folder(
            path, tool=tool, config=config, overwrite=overwrite, details=details, **check
        )


def remove_own_temporaries(folder: Path, owns: Callable[[str], bool]) -> int:
    """Delete ``NAME.tmp-PID`` files of killed runs whose ``NAME`` the tool writes (``owns``).

    Only call it while holding the folder's lock: temporaries of a live run of ours would go too.
    Other ``*.tmp-*`` files (the user's) are never touched.

    Returns:
        How many were removed.
    """
    n = 0
    for p in folder.glob("*.tmp-*"):
        m = _TEMPORARY.fullmatch(p.name)
        if m and p.is_file() and owns(m.group("name")):
            p.unlink(missing_ok=True)
            n += 1
    return n
