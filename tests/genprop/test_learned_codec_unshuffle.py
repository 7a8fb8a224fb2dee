"""The learned codec's pixel-unshuffle front end (``unshuffle``, as Wan2.2's VAE ``patch_size``):
geometry, folders written before the field existed, and a GenProp export that loads it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genprop import GenPropModel, preset
from genprop.configs import GenPropConfig
from genprop.modeling.learned_codec import CONFIG_NAME, LearnedVideoCodec, load_codec


def _codec(**arch: int) -> LearnedVideoCodec:
    torch.manual_seed(0)
    return LearnedVideoCodec(latent_channels=5, width=4, **arch)


@pytest.mark.parametrize(("downsamples", "unshuffle"), [(1, 2), (2, 2), (1, 4)])
def test_unshuffle_multiplies_the_spatial_factor(downsamples: int, unshuffle: int) -> None:
    codec = _codec(downsamples=downsamples, unshuffle=unshuffle)
    f = unshuffle * 2**downsamples
    video = torch.rand(2, 3, 3, 16, 32) * 2 - 1
    z = codec.encode(video)
    assert codec.spatial_factor == f and z.shape == (2, 3, 5, 16 // f, 32 // f)
    assert codec.decode(z).shape == video.shape
    # No convolution sees the full-resolution frame: the first one reads unshuffled cells.
    first = next(m for m in codec.encoder if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3 * unshuffle**2
    with pytest.raises(ValueError, match="multiple"):
        codec.encode(torch.zeros(1, 1, 3, 16, f * 3 + 2))


def test_folders_without_the_field_still_load(tmp_path: Path) -> None:
    # Codecs saved before `unshuffle` existed: no such key in codec.json, the same weight names.
    old = _codec(downsamples=2).save(tmp_path / "old")
    meta = json.loads((old / CONFIG_NAME).read_text())
    assert meta.pop("unshuffle") == 1
    (old / CONFIG_NAME).write_text(json.dumps(meta))
    loaded = load_codec(old)
    assert (loaded.unshuffle, loaded.spatial_factor) == (1, 4)
    assert "encoder.0.weight" in loaded.state_dict()
    new = _codec(downsamples=1, unshuffle=2).save(tmp_path / "new")
    assert load_codec(new).architecture()["unshuffle"] == 2
    meta = json.loads((new / CONFIG_NAME).read_text())
    (new / CONFIG_NAME).write_text(json.dumps(meta | {"unshuffle": 1}))
    with pytest.raises(ValueError, match="does not match"):
        load_codec(new)  # the weights are an unshuffling codec's


def test_export_with_an_unshuffling_codec_loads(tmp_path: Path) -> None:
    folder = _codec(downsamples=1, unshuffle=2).save(tmp_path / "codec")
    cfg = preset("cpu_test")  # 4 frames of 32x32 -> 8x8 latent cells
    cfg.codec.kind, cfg.codec.path = "learned", str(folder)
    model = GenPropModel.from_config(cfg)
    assert (cfg.codec.unshuffle, cfg.codec.downsamples) == (2, 1)  # read from codec.json
    out = model.save_pretrained(tmp_path / "export")
    loaded = GenPropModel.from_pretrained(out)
    assert loaded.codec.spatial_factor == 4 and loaded.config.codec.unshuffle == 2
    x = torch.rand(1, 4, 3, 32, 32) * 2 - 1
    assert torch.equal(model.codec.encode(x), loaded.codec.encode(x))
    data = cfg.to_dict()
    data["codec"]["unshuffle"] = 0
    with pytest.raises(ValueError, match=r"codec\.unshuffle"):
        GenPropConfig.from_dict(data)
