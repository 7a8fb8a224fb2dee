"""A small learned video autoencoder: the demo's stand-in for Wan's VAE (``codec.kind: learned``).

A convolutional encoder/decoder in plain torch, trained on toy-world frames by
``python -m training.codec_train`` (stage 0 of the demo) and frozen when a GenProp model uses it.
Like Wan's VAE it maps pixels to a compact latent grid of a few channels
(``unshuffle · 2**downsamples`` x smaller in H and W, ``latent_channels`` channels) and normalises
the latents per channel with stored statistics (Wan's ``latents_mean`` / ``latents_std``), so the
diffusion model sees roughly zero-mean, unit-variance latents.

Time is handled frame by frame (``temporal_factor`` 1): the demo's clips are 8 frames, and a 4x
causal temporal codec needs 1 + 4k frames, so it would change every clip length of the demo; a 2D
codec also trains several times faster on a CPU. The first frame is therefore encoded like every
other frame, which keeps the I2V conditioning exact up to the codec's reconstruction error.

Folder layout (read with no pickle)::

    DIR/codec.json          {"format": "genprop-codec", "version": 1, "latent_channels": C,
                             "width": W, "downsamples": D, "unshuffle": U, ...extra metadata}
                            ("unshuffle" may be absent: 1, the first codecs' layout)
    DIR/codec.safetensors   the weights and the two statistics buffers
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from contracts.jsonfile import read_json_object
from genprop.encoder_configs import CodecConfig
from genprop.modeling.codec import LatentCodec

CONFIG_NAME = "codec.json"
WEIGHTS_NAME = "codec.safetensors"
FORMAT = "genprop-codec"
FORMAT_VERSION = 1
ARCH_FIELDS = ("latent_channels", "width", "downsamples", "unshuffle", "linear_skip")
# Bounds on the architecture a codec folder may ask for (checked before anything is built).
ARCH_BOUNDS = {
    "latent_channels": (1, 1024),
    "width": (1, 1024),
    "downsamples": (0, 4),
    "unshuffle": (1, 4),
    "linear_skip": (0, 1),
}
# Fields a codec.json may leave out (written before the field existed).
ARCH_DEFAULTS = {"unshuffle": 1, "linear_skip": 0}
# Slack over the weights' own bytes a codec.safetensors may have (its JSON header).
_HEADER_SLACK = 1 << 20


class CodecFolderError(ValueError):
    """A learned codec folder is missing, malformed or does not match its config."""


class _ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection: (N, c, H, W) -> (N, c, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


def _stage_channels(width: int, downsamples: int) -> list[int]:
    """Channels at each resolution, full resolution first (doubling, capped at 4x width)."""
    return [width * min(2**i, 4) for i in range(downsamples + 1)]


class LearnedVideoCodec(LatentCodec):
    """Per-frame conv autoencoder: videos (B, T, 3, H, W) in [-1, 1] <-> (B, T, C, H/f, W/f).

    ``f = unshuffle · 2**downsamples``. With ``unshuffle`` u > 1 the frame is first
    pixel-unshuffled (u x u pixels -> 3u² channels, as Wan2.2's VAE does with its ``patch_size``)
    and the decoder ends with the matching pixel shuffle, so no convolution runs at full
    resolution: most of a step's time on a CPU. Latents are normalised as
    ``(z - latents_mean) / latents_std`` (per-channel buffers, saved with the weights); a fresh
    codec has mean 0 and std 1 until :meth:`set_latent_stats` stores the statistics of its
    training frames.

    Args:
        latent_channels: C.
        width: channels of the first stage (doubled per downsample, at most 4x).
        downsamples: number of stride-2 stages.
        unshuffle: pixel-unshuffle factor before the first convolution (1: none).
    """

    def __init__(
        self,
        *,
        latent_channels: int,
        width: int,
        downsamples: int,
        unshuffle: int = 1,
        linear_skip: int = 0,
    ) -> None:
        super().__init__()
        arch = {
            "latent_channels": latent_channels,
            "width": width,
            "downsamples": downsamples,
            "unshuffle": unshuffle,
            "linear_skip": linear_skip,
        }
        check_architecture(arch, where="LearnedVideoCodec")
        self.latent_channels = latent_channels
        self.width = width
        self.downsamples = downsamples
        self.unshuffle = unshuffle
        self.linear_skip = linear_skip
        self.spatial_factor = unshuffle * 2**downsamples
        self.temporal_factor = 1
        chans = _stage_channels(width, downsamples)
        pixels = 3 * unshuffle**2  # channels of the (unshuffled) frame
        # No parameter-free module in front when unshuffle is 1: the first codecs' weight names.
        enc: list[nn.Module] = [nn.PixelUnshuffle(unshuffle)] if unshuffle > 1 else []
        enc += [nn.Conv2d(pixels, chans[0], 3, padding=1)]
        for c_in, c_out in itertools.pairwise(chans):
            enc += [_ResBlock(c_in), nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)]
        last = chans[-1]
        enc += [_ResBlock(last), nn.SiLU(), nn.Conv2d(last, latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, chans[-1], 3, padding=1)]
        for c_in, c_out in zip(chans[:0:-1], chans[-2::-1], strict=True):
            dec += [
                _ResBlock(c_in),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1),
            ]
        dec += [_ResBlock(chans[0]), nn.SiLU(), nn.Conv2d(chans[0], pixels, 3, padding=1)]
        last_dec = dec[-1]
        if unshuffle > 1:
            dec.append(nn.PixelShuffle(unshuffle))
        self.decoder = nn.Sequential(*dec)
        if linear_skip:
            # A linear path beside the convolutions: each latent cell is a linear map of its
            # f x f pixels and back (training.codec_train starts it at the pixels' principal
            # components). The convolutions' last layers start at zero, so a fresh codec is
            # that linear codec and training learns what it misses.
            f = self.spatial_factor
            self.skip_in = nn.PixelUnshuffle(f)
            self.skip_enc = nn.Conv2d(3 * f * f, latent_channels, 1)
            self.skip_dec = nn.Conv2d(latent_channels, 3 * f * f, 1)
            self.skip_out = nn.PixelShuffle(f)
            for conv in (enc[-1], last_dec):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        self.register_buffer("latents_mean", torch.zeros(latent_channels))
        self.register_buffer("latents_std", torch.ones(latent_channels))

    def architecture(self) -> dict[str, int]:
        """The fields of ``codec.json`` that define the architecture."""
        return {
            "latent_channels": self.latent_channels,
            "width": self.width,
            "downsamples": self.downsamples,
            "unshuffle": self.unshuffle,
            "linear_skip": self.linear_skip,
        }

    @torch.no_grad()
    def init_linear_skip(self, frames: torch.Tensor) -> None:
        """Start the linear path at the principal components of ``frames``' f x f cells.

        ``frames`` (N, 3, H, W) in [-1, 1]; the encoder's linear map projects a cell onto its
        ``latent_channels`` first components (after removing the mean cell) and the decoder's
        maps them back, so the fresh codec is the best linear codec of that size on them.

        Raises:
            ValueError: without a linear path, or with fewer cells than latent channels.
        """
        if not self.linear_skip:
            raise ValueError("init_linear_skip: this codec has no linear path (linear_skip 0)")
        cells = self.skip_in(frames.to(self.skip_enc.weight.dtype))
        cells = cells.permute(0, 2, 3, 1).reshape(-1, cells.shape[1])
        if len(cells) < self.latent_channels:
            raise ValueError(f"init_linear_skip: {len(cells)} cells, need {self.latent_channels}")
        mean = cells.mean(0)
        _, _, vh = torch.linalg.svd(cells - mean, full_matrices=False)
        w = vh[: self.latent_channels]  # (C, P)
        self.skip_enc.weight.copy_(w[:, :, None, None])
        self.skip_enc.bias.copy_(-(w @ mean))
        self.skip_dec.weight.copy_(w.T[:, :, None, None])
        self.skip_dec.bias.copy_(mean)

    def _weight_dtype(self) -> torch.dtype:
        """The convolutions' dtype (the statistics buffers may be kept in another one)."""
        return self.decoder[0].weight.dtype

    # ------------------------------------------------------------------ frames (training)
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Un-normalised latents: frames (N, 3, H, W) in [-1, 1] -> (N, C, H/f, W/f)."""
        self.check_size(frames.shape[-2], frames.shape[-1])
        x = frames.to(self._weight_dtype())
        z = self.encoder(x)
        if self.linear_skip:
            z = z + self.skip_enc(self.skip_in(x))
        return z

    def decode_frames(self, z: torch.Tensor) -> torch.Tensor:
        """Un-normalised latents (N, C, h, w) -> frames (N, 3, f·h, f·w), not clamped."""
        z = z.to(self._weight_dtype())
        x = self.decoder(z)
        if self.linear_skip:
            x = x + self.skip_out(self.skip_dec(z))
        return x

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel latent statistics (C,) used by :meth:`encode` / :meth:`decode`.

        Raises:
            ValueError: If a shape is not (C,), a value is not finite, or a std is not > 0.
        """
        for name, v in (("mean", mean), ("std", std)):
            if tuple(v.shape) != (self.latent_channels,) or not bool(v.isfinite().all()):
                raise ValueError(f"latent {name}: expected {self.latent_channels} finite values")
        if not bool((std > 0).all()):
            raise ValueError("latent std: expected values > 0")
        self.latents_mean.copy_(mean)
        self.latents_std.copy_(std)

    # ------------------------------------------------------------------ the codec interface
    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        view = (1, -1, 1, 1)
        return self.latents_mean.view(view), self.latents_std.view(view)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Videos (B, T, 3, H, W) in [-1, 1] -> normalised latents (B, T, C, H/f, W/f)."""
        b = video.shape[0]
        z = self.encode_frames(rearrange(video, "b t c h w -> (b t) c h w"))
        mean, std = self._stats()
        return rearrange((z - mean) / std, "(b t) c h w -> b t c h w", b=b).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, T, C, h, w) -> videos (B, T, 3, f·h, f·w) in [-1, 1]."""
        b = latents.shape[0]
        mean, std = self._stats()
        z = rearrange(latents, "b t c h w -> (b t) c h w").to(mean.dtype) * std + mean
        x = self.decode_frames(z).clamp(-1, 1)
        return rearrange(x, "(b t) c h w -> b t c h w", b=b).float()

    # ------------------------------------------------------------------ folder
    def save(self, folder: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``codec.json`` (architecture + ``metadata``) and ``codec.safetensors``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_NAME))
        meta = {"format": FORMAT, "version": FORMAT_VERSION, **self.architecture()}
        meta |= {k: v for k, v in (metadata or {}).items() if k not in meta}
        (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        return out


def check_architecture(data: dict[str, Any], *, where: str) -> dict[str, int]:
    """The architecture fields of ``data``, checked (ints in range; ``ARCH_DEFAULTS`` for the
    optional ones).

    Raises:
        CodecFolderError: naming ``where`` and the first missing or bad field.
    """
    out: dict[str, int] = {}
    for name in ARCH_FIELDS:
        value = data.get(name, ARCH_DEFAULTS.get(name))
        low, high = ARCH_BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CodecFolderError(
                f"{where}: field {name!r}: expected an integer in [{low}, {high}], got {value!r}"
            )
        out[name] = value
    return out


def read_codec_config(folder: str | Path) -> dict[str, Any]:
    """``codec.json`` of a learned codec folder, checked (format, version, architecture).

    Raises:
        CodecFolderError: one line naming the folder or file and what was expected.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CodecFolderError(
            f"codec.path: {root} is not a folder (expected a learned codec folder with "
            f"{CONFIG_NAME} and {WEIGHTS_NAME}, written by python -m training.codec_train)"
        )
    path = root / CONFIG_NAME
    meta = read_json_object(path, what="learned codec config", error=CodecFolderError)
    if meta.get("format") != FORMAT:
        raise CodecFolderError(
            f"{path}: field 'format': expected {FORMAT!r}, got {meta.get('format')!r}"
        )
    if meta.get("version") != FORMAT_VERSION:
        raise CodecFolderError(
            f"{path}: field 'version': expected {FORMAT_VERSION}, got {meta.get('version')!r}"
        )
    check_architecture(meta, where=str(path))
    return meta


def load_codec(folder: str | Path) -> LearnedVideoCodec:
    """The codec saved in ``folder`` by :meth:`LearnedVideoCodec.save` (safetensors, no pickle).

    The weights file is size-checked against the architecture before it is read, and every
    tensor must match the architecture and be finite.

    Raises:
        CodecFolderError: one line naming the file and what is wrong.
    """
    root = Path(folder)
    arch = check_architecture(read_codec_config(root), where=str(root / CONFIG_NAME))
    codec = LearnedVideoCodec(**arch)
    path = root / WEIGHTS_NAME
    if not path.is_file():
        raise CodecFolderError(f"{path}: missing (expected the codec's weights, safetensors)")
    expected = sum(4 * v.numel() for v in codec.state_dict().values())
    size = path.stat().st_size
    if size > expected + _HEADER_SLACK:
        raise CodecFolderError(
            f"{path}: {size} bytes, expected about {expected} for the architecture in {CONFIG_NAME}"
        )
    try:
        state = load_file(str(path))
        codec.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CodecFolderError(
            f"{path}: unreadable or does not match {CONFIG_NAME} ({first})"
        ) from None
    bad = next((k for k, v in state.items() if not bool(v.isfinite().all())), None)
    if bad is not None:
        raise CodecFolderError(f"{path}: tensor {bad!r} holds NaN or inf")
    if not bool((codec.latents_std > 0).all()):
        raise CodecFolderError(f"{path}: 'latents_std' must be > 0")
    return codec


def build_learned_codec(cfg: CodecConfig, *, load_weights: bool = True) -> LearnedVideoCodec:
    """The frozen learned codec ``cfg`` describes.

    With ``load_weights`` the codec is read from ``cfg.path`` and the architecture fields of
    ``cfg`` are set from its ``codec.json`` (the folder is the reference, as a Wan VAE folder's
    config is for ``wan_vae``). Without, it is built from ``cfg``'s fields with its stored
    statistics still to be loaded (``GenPropModel.from_pretrained`` loads them with the
    weights).

    Raises:
        CodecFolderError: when the folder is bad, or ``load_weights`` without ``cfg.path``.
    """
    if load_weights:
        if cfg.path is None:
            raise CodecFolderError(
                "codec.path: a learned codec needs its folder (codec.json + codec.safetensors, "
                "written by python -m training.codec_train)"
            )
        codec = load_codec(cfg.path)
        for name, value in codec.architecture().items():
            setattr(cfg, name, value)
    else:
        codec = LearnedVideoCodec(
            latent_channels=cfg.latent_channels,
            width=cfg.width,
            downsamples=cfg.downsamples,
            unshuffle=cfg.unshuffle,
            linear_skip=cfg.linear_skip,
        )
    codec.requires_grad_(False)
    return codec.eval()


BUNDLE_DIR = "codec"


def bundle_codec(codec: LatentCodec, path: str | None, model_folder: Path) -> str:
    """Put a learned codec's folder inside ``model_folder`` and return its relative path.

    A codec folder already inside ``model_folder`` stays where it is; another is copied file by
    file into ``model_folder/codec`` (so its checksum, which latent caches are keyed by, is
    unchanged); a codec without a folder is written there by :meth:`LearnedVideoCodec.save`.
    """
    root = model_folder.resolve()
    if path is not None:
        src = Path(path).expanduser().resolve()
        if src == root or src.is_relative_to(root):
            return src.relative_to(root).as_posix() or "."
    dst = root / BUNDLE_DIR
    if path is not None and (Path(path) / CONFIG_NAME).is_file():
        dst.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            shutil.copyfile(Path(path) / name, dst / name)
    elif isinstance(codec, LearnedVideoCodec):
        codec.save(dst)
    else:
        raise ValueError(f"codec.path: {path!r} holds no learned codec to bundle")
    return BUNDLE_DIR
