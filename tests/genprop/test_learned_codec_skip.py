"""The learned codec's linear path (``linear_skip``): started at the principal components of the
training cells it is the best linear codec of its size, the convolutions start at zero beside it,
and it survives a save/load and a GenProp export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genprop.modeling.learned_codec import CONFIG_NAME, LearnedVideoCodec, load_codec


def _codec(**arch: int) -> LearnedVideoCodec:
    torch.manual_seed(0)
    return LearnedVideoCodec(latent_channels=6, width=8, **arch)


def _frames(n: int = 24, size: int = 16) -> torch.Tensor:
    """Frames with structure (smooth gradients and a block), in [-1, 1]."""
    g = torch.Generator().manual_seed(1)
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    a = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    b = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    frames = (a * x + b * y) * 0.5
    frames[..., 4:9, 5:11] += 0.4
    return frames.clamp(-1, 1)


def _pca_reconstruction(frames: torch.Tensor, f: int, c: int) -> torch.Tensor:
    """The rank-c projection of the frames' f x f cells, computed independently."""
    cells = torch.nn.functional.pixel_unshuffle(frames, f)
    n, p, h, w = cells.shape
    flat = cells.permute(0, 2, 3, 1).reshape(-1, p)
    mean = flat.mean(0)
    _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    proj = (flat - mean) @ vh[:c].T @ vh[:c] + mean
    return torch.nn.functional.pixel_shuffle(proj.reshape(n, h, w, p).permute(0, 3, 1, 2), f)


@pytest.mark.parametrize(("downsamples", "unshuffle"), [(0, 4), (1, 2), (2, 1)])
def test_a_fresh_codec_is_the_principal_components_codec(downsamples: int, unshuffle: int) -> None:
    codec = _codec(downsamples=downsamples, unshuffle=unshuffle, linear_skip=1)
    frames = _frames()
    codec.init_linear_skip(frames)
    with torch.no_grad():
        out = codec.decode_frames(codec.encode_frames(frames))
    expected = _pca_reconstruction(frames, codec.spatial_factor, 6)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    # Without the linear path the same fresh codec is far off (what the init buys).
    plain = _codec(downsamples=downsamples, unshuffle=unshuffle)
    with torch.no_grad():
        err_plain = float((plain.decode_frames(plain.encode_frames(frames)) - frames).pow(2).mean())
    assert float((out - frames).pow(2).mean()) < err_plain / 10


def test_the_convolutions_train_beside_the_linear_path() -> None:
    codec = _codec(downsamples=0, unshuffle=4, linear_skip=1)
    frames = _frames()
    codec.init_linear_skip(frames)
    loss = (codec.decode_frames(codec.encode_frames(frames)) - frames).pow(2).mean()
    loss.backward()
    # The zero-initialised last layers get gradients, so the convolutions do learn.
    assert float(codec.decoder[-2].weight.grad.abs().sum()) > 0
    assert float(codec.encoder[-1].weight.grad.abs().sum()) > 0


def test_the_linear_path_survives_save_and_load(tmp_path: Path) -> None:
    codec = _codec(downsamples=0, unshuffle=4, linear_skip=1)
    codec.init_linear_skip(_frames())
    folder = codec.save(tmp_path / "codec")
    assert json.loads((folder / CONFIG_NAME).read_text())["linear_skip"] == 1
    loaded = load_codec(folder)
    frames = _frames(4)[:, None]
    torch.testing.assert_close(
        loaded.decode(loaded.encode(frames)), codec.decode(codec.encode(frames))
    )
    # A codec.json claiming no linear path does not match the weights: one line, not a load.
    meta = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps(meta | {"linear_skip": 0}))
    with pytest.raises(ValueError, match="does not match"):
        load_codec(folder)


def test_init_needs_the_linear_path() -> None:
    with pytest.raises(ValueError, match="no linear path"):
        _codec(downsamples=2).init_linear_skip(_frames())
