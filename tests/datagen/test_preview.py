"""genprop-preview renders a contact sheet and GIFs from shards."""

from __future__ import annotations

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
