"""``python -m training.codec_train --unshuffle``: the pixel-unshuffle front end of stage 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_codec_train import write_world

from genprop.modeling.learned_codec import load_codec
from training.codec_train import main, run


def test_codec_train_unshuffle_flag(tmp_path: Path) -> None:
    world = write_world(tmp_path / "world", videos=3)
    args = ["--data", str(world), "--out", str(tmp_path / "codec"), "--steps", "2", "--width", "4",
            "--latent-channels", "3", "--downsamples", "1", "--unshuffle", "2"]  # fmt: skip
    report = run(args)
    assert (report["unshuffle"], report["spatial_factor"]) == (2, 4)
    assert load_codec(tmp_path / "codec").unshuffle == 2


def test_a_bad_unshuffle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = write_world(tmp_path / "world", videos=2)
    with pytest.raises(SystemExit) as info:
        main(["--data", str(world), "--out", str(tmp_path / "codec"), "--unshuffle", "5"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("codec_train: error: --unshuffle: expected an integer in [1, 4], got 5")
    assert not (tmp_path / "codec").exists()


def test_codec_train_starts_from_the_principal_components(tmp_path: Path) -> None:
    world = write_world(tmp_path / "world", videos=3)
    base = ["--data", str(world), "--steps", "1", "--width", "4", "--latent-channels", "6",
            "--downsamples", "0", "--unshuffle", "4", "--lr", "1e-9"]  # fmt: skip
    plain = run([*base, "--out", str(tmp_path / "plain")])
    skip = run([*base, "--out", str(tmp_path / "skip"), "--linear-skip", "1"])
    assert skip["linear_skip"] == 1 and skip["loss"] == "mse"
    assert skip["initial_heldout_psnr_db"] > plain["initial_heldout_psnr_db"] + 3
    assert load_codec(tmp_path / "skip").linear_skip == 1
