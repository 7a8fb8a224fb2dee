"""Shard specs -> shard lists: the one expansion ``genprop-train`` and ``genprop-cache`` share.

A spec is a string or a list of strings; each may be a brace pattern
(``shards/shard-{000000..000009}.tar``), several specs joined by ``::``, a local folder (its
``*.tar``, sorted), a local file, or (where remote shards are allowed) a URL (``http(s)://``,
``pipe:``, ``s3://``, ...). Every error names the option the spec came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

REMOTE_PREFIXES = ("http://", "https://", "pipe:", "s3://", "gs://", "ais://")

ShardSpec = str | Path | Sequence[str | Path]


def expand_shards(
    spec: ShardSpec,
    *,
    field: str = "data.shards",
    remote: bool = True,
    error: type[Exception] = FileNotFoundError,
) -> list[str]:
    """Expand ``spec`` into shard URLs / local paths, in order.

    Args:
        spec: see the module docstring.
        field: the option the spec came from, for messages (``"data.shards"``).
        remote: keep remote URLs as they are; with ``False`` a remote URL is an error (a job that
            writes next to its inputs reads local shards only).
        error: the exception type raised (callers keep their own error types).

    Raises:
        error: naming ``field``, when a local path does not exist, a folder holds no ``.tar``
            shard, a remote URL is given with ``remote=False``, or the spec expands to nothing.
    """
    from webdataset.shardlists import expand_urls  # brace and "::" expansion, as webdataset reads

    items = [spec] if isinstance(spec, str | Path) else list(spec)
    urls: list[str] = []
    for item in items:
        for url in expand_urls(str(item)):
            if url.startswith(REMOTE_PREFIXES):
                if not remote:
                    raise error(f"{field}: {url}: only local shards can be read here")
                urls.append(url)
                continue
            path = Path(url.removeprefix("file://")).expanduser()
            if path.is_dir():
                tars = sorted(str(p) for p in path.glob("*.tar"))
                if not tars:
                    raise error(f"{field}: folder {path} holds no .tar shard")
                urls.extend(tars)
            elif path.is_file():
                urls.append(str(path))
            else:
                raise error(f"{field}: no shard at {path} (from {item!r})")
    if not urls:
        raise error(f"{field}: {spec!r} expands to no shard")
    return urls
