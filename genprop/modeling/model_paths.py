"""Folder paths inside a model's ``config.json`` (``backbone.path``, ``codec.path``, ``text.path``).

A model folder is untrusted input, so the folders its config points to are confined to it:

* a relative path is resolved against the **model folder** (never the working directory) and
  must stay inside it after resolving ``..`` and symlinks;
* an absolute path, or one that leaves the folder, is refused unless it lies inside a folder the
  user explicitly allowed (``allowed_roots``; ``--allow-path`` on the command line) or the user
  gave the field's value explicitly (``paths={"text.path": ...}``).

``save_pretrained`` writes paths inside the output folder relative to it, so a folder that
carries its own components stays loadable after being moved. Paths outside it (a Wan export
reading its frozen text encoder from the pipeline folder) are written absolute and need
``allowed_roots`` to load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from genprop.configs import GenPropConfig

SECTIONS = ("backbone", "codec", "text")


def path_fields(cfg: GenPropConfig) -> Iterator[tuple[str, Any, str]]:
    """``(dotted name, section object, attribute)`` of every path field of ``cfg``.

    Path fields are the dataclass fields named ``path`` or ending in ``_path``.
    """
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            if f.name == "path" or f.name.endswith("_path"):
                yield f"{section}.{f.name}", obj, f.name


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def confine_paths(
    cfg: GenPropConfig,
    folder: Path,
    *,
    source: Path,
    paths: Mapping[str, str | Path] | None = None,
    allowed_roots: Sequence[str | Path] = (),
) -> None:
    """Resolve ``cfg``'s path fields in place (absolute, symlinks resolved) or refuse them.

    Args:
        cfg: the config read from ``source``.
        folder: the model folder relative paths are resolved against.
        source: the config file, named in errors.
        paths: explicit values for path fields (``{"text.path": DIR}``), used as given.
        allowed_roots: folders outside ``folder`` that path fields may point into.

    Raises:
        ValueError: naming ``source`` and the field, for a path that leaves the model folder
            and every allowed root, or an unknown field in ``paths``.
    """
    explicit = dict(paths or {})
    known = {name for name, _, _ in path_fields(cfg)}
    unknown = sorted(set(explicit) - known)
    if unknown:
        raise ValueError(f"paths: unknown field(s) {unknown}; path fields of this model: {known}")
    root = folder.resolve()
    roots = [root, *(Path(r).expanduser().resolve() for r in allowed_roots)]
    for name, obj, attr in path_fields(cfg):
        if name in explicit:
            setattr(obj, attr, str(Path(explicit[name]).expanduser()))
            continue
        value = getattr(obj, attr)
        if value is None:
            continue
        given = Path(value)
        resolved = given.resolve() if given.is_absolute() else (root / given).resolve()
        inside_model = not given.is_absolute() and _inside(resolved, root)
        if not inside_model and not any(_inside(resolved, r) for r in roots[1:]):
            raise ValueError(
                f"{source}: field {name!r}: {value!r} lies outside the model folder {folder} "
                "(absolute, '..' or a symlink out of it); allow its folder explicitly "
                "(genprop-propagate --allow-path DIR, or from_pretrained(..., allowed_roots=[DIR]))"
            )
        setattr(obj, attr, str(resolved))


def relative_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``config.to_dict()`` output with path fields inside ``folder`` made relative to it."""
    root = folder.resolve()
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for section in SECTIONS:
        part = out.get(section)
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if (key == "path" or key.endswith("_path")) and isinstance(value, str):
                resolved = Path(value).expanduser().resolve()
                if _inside(resolved, root):
                    part[key] = resolved.relative_to(root).as_posix() or "."
    return out
