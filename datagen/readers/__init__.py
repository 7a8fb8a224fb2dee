"""Dataset readers: every source becomes a stream of :class:`~datagen.record.VideoRecord`.

``open_reader(source, **options)`` is the one entry point (Hydra passes ``cfg.source`` minus its
``name``). Sources and options:

- ``ytvis``: ``annotations=FILE frames=DIR [fps=6.0] [max_json_bytes=2**30]`` (YouTube-VIS
  2019/2021/2022, OVIS);
- ``sav``: ``root=DIR [masklets=manual|auto|both] [annot_every=4] [max_json_bytes=2**30]`` (SA-V
  train layout);
- ``vos``: ``root=DIR [resolution=480p] [fps=None]`` (YouTube-VOS / DAVIS folders);
- ``mp4_masks``: ``root=DIR`` holding ``<name>.mp4`` + ``<name>_mask/`` (one PNG per frame;
  E2FGVI / ProPainter examples);
- ``toyworld``: ``root=DIR [fps=...]``: the built-in toy world, written in YouTube-VIS layout as
  ``ROOT/annotations.json`` + ``ROOT/JPEGImages``.

Every reader treats the dataset as untrusted: numeric fields are checked when a video is loaded
(:mod:`datagen.readers.fields`; a bad value makes that video a
:class:`~datagen.record.BadVideo` naming the file and field, which the dry run reports), files
must be regular files inside the dataset folders once links are followed
(:mod:`datagen.readers.paths`), and JSON files are size-bounded before parsing
(:mod:`contracts.jsonfile`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from datagen.readers.mp4_masks import Mp4MasksReader
from datagen.readers.sav import SavReader
from datagen.readers.vos import VosReader
from datagen.readers.ytvis import YtvisReader
from datagen.record import DatasetError, Reader

SOURCES = ("ytvis", "sav", "vos", "mp4_masks", "toyworld")
READERS: dict[str, type[Reader]] = {
    "ytvis": YtvisReader,
    "sav": SavReader,
    "vos": VosReader,
    "mp4_masks": Mp4MasksReader,
    "toyworld": YtvisReader,  # the toy world is written in YouTube-VIS layout
}


def open_reader(source: str, **options: Any) -> Reader:
    """Open a dataset reader.

    Args:
        source: one of :data:`SOURCES`.
        **options: the source's options (see the module docstring); ``None`` values are dropped,
            so that unset Hydra keys fall back to the reader's defaults.

    Raises:
        DatasetError: unknown source, unknown or missing option, or an unusable dataset.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if source == "toyworld":
        if "root" not in options:
            raise DatasetError("source=toyworld needs source.root=DIR (the toy world folder)")
        root = Path(options.pop("root"))
        options = {
            "annotations": root / "annotations.json",
            "frames": root / "JPEGImages",
            "source_name": "toyworld",
            **options,
        }
    if source not in READERS:
        raise DatasetError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    reader_cls = READERS[source]
    try:
        inspect.signature(reader_cls).bind(**options)
    except TypeError as e:  # a missing or unknown option
        raise DatasetError(f"source={source}: bad options {sorted(options)}: {e}") from e
    return reader_cls(**options)


__all__ = [
    "READERS",
    "SOURCES",
    "Mp4MasksReader",
    "SavReader",
    "VosReader",
    "YtvisReader",
    "open_reader",
]
