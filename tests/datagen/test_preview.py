"""genprop-preview renders a contact sheet and GIFs from shards."""

from __future__ import annotations

import io
import tarfile

import pytest
from PIL import Image
from synth_records import make_sample

from datagen.preview import main
from datagen.shards import write_shard


def test_preview_writes_sheet_and_gifs(tmp_path):
    samples = [make_sample(key=f"k{i}") for i in range(3)]
    write_shard(tmp_path / "out", "shard-000000", samples, config_hash="h", codec="lossless")
    sheet, gifs = tmp_path / "sheet.png", tmp_path / "gifs"
    assert (
        main([str(tmp_path / "out"), "--out", str(sheet), "--num", "2", "--gif-dir", str(gifs)])
        == 0
    )
    img = Image.open(sheet)
    H, W = samples[0].first.shape[:2]
    assert img.width >= 4 * W and img.height >= 2 * 3 * H  # 2 samples x 3 rows
    assert sorted(p.name for p in gifs.iterdir()) == ["k0.gif", "k1.gif"]
    assert Image.open(gifs / "k0.gif").n_frames == samples[0].sce.shape[0]


def _one_line_error(capsys, argv, *needles):
    """``main(argv)`` exits 2 with one ``genprop-preview: error:`` line naming ``needles``."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genprop-preview: error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err


def test_preview_bad_inputs_are_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "sheet.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, [str(empty), "--out", out], str(empty), "no .tar shards")
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar archive\n" * 40)
    _one_line_error(capsys, [str(garbage), "--out", out], str(garbage), "not a tar archive")
    write_shard(tmp_path / "ok", "shard-000000", [make_sample(key="k0")], config_hash="h")
    shard = str(tmp_path / "ok")
    _one_line_error(capsys, [shard, "--out", str(tmp_path / "s.xyz")], "'.xyz'", "extension")
    _one_line_error(capsys, [shard, "--out", out, "--num", "0"], "--num", ">= 1")
    _one_line_error(capsys, [shard, "--out", out, "--frames", "-1"], "--frames", ">= 1")
    assert not (tmp_path / "sheet.png").exists() and not (tmp_path / "s.xyz").exists()


def test_preview_undecodable_sample_names_shard_and_key(tmp_path, capsys):
    """A tar of files that are not samples: the line names the shard and the sample."""
    tar_path = tmp_path / "foreign.tar"
    with tarfile.open(tar_path, "w") as tar:
        data = b"{}"
        info = tarfile.TarInfo("abc.meta.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    _one_line_error(
        capsys, [str(tar_path), "--out", str(tmp_path / "s.png")], str(tar_path), "'abc'"
    )
