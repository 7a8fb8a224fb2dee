"""Paths in a model folder's config.json are confined to the folder unless the user allows more.

The hashing text encoder ignores ``text.path``, so these tests exercise the path rules on a tiny
model without a real tokenizer folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from genprop import GenPropModel, preset


def _save(folder: Path, text_path: str | None) -> Path:
    cfg = preset("cpu_test")
    cfg.text.path = text_path
    torch.manual_seed(0)
    return GenPropModel.from_config(cfg).save_pretrained(folder)


def _set_text_path(folder: Path, value: str) -> None:
    meta = json.loads((folder / "config.json").read_text())
    meta["text"]["path"] = value
    (folder / "config.json").write_text(json.dumps(meta))


def test_path_inside_the_folder_is_saved_relative_and_survives_a_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "m"
    (folder / "tokenizer").mkdir(parents=True)
    _save(folder, str(folder / "tokenizer"))
    assert json.loads((folder / "config.json").read_text())["text"]["path"] == "tokenizer"
    moved = tmp_path / "elsewhere" / "m2"
    shutil.move(folder, moved)
    monkeypatch.chdir(tmp_path)  # relative to the model folder, never to the working directory
    loaded = GenPropModel.from_pretrained(moved)
    assert loaded.config.text.path == str((moved / "tokenizer").resolve())


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_paths_leaving_the_folder_are_refused(tmp_path: Path, kind: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = _save(tmp_path / "m", None)
    value = {"absolute": str(outside), "dotdot": "../outside", "symlink": "link"}[kind]
    if kind == "symlink":
        (folder / "link").symlink_to(outside)
    _set_text_path(folder, value)
    with pytest.raises(ValueError, match=r"config\.json: field 'text\.path': .* outside"):
        GenPropModel.from_pretrained(folder)


def test_the_user_can_allow_a_folder_or_give_the_path(tmp_path: Path) -> None:
    outside = tmp_path / "pipeline" / "text_encoder"
    outside.mkdir(parents=True)
    folder = _save(tmp_path / "m", str(outside))
    assert json.loads((folder / "config.json").read_text())["text"]["path"] == str(outside)
    loaded = GenPropModel.from_pretrained(folder, allowed_roots=[tmp_path / "pipeline"])
    assert loaded.config.text.path == str(outside.resolve())
    given = GenPropModel.from_pretrained(folder, paths={"text.path": tmp_path / "other"})
    assert given.config.text.path == str(tmp_path / "other")
    with pytest.raises(ValueError, match="unknown field"):
        GenPropModel.from_pretrained(folder, paths={"text.folder": tmp_path})
