"""Validation of a :class:`~genprop.configs.GenPropConfig` before anything is allocated.

A model folder's ``config.json`` is untrusted input: a NaN width, a zero patch size or a depth of a
billion must give one clear error naming the field, not a ``ZeroDivisionError`` or gigabytes of
allocation. :func:`check_config` checks every numeric field's type and range, the kinds, the
sub-folder names and two budgets computed analytically from the config:

* :data:`MAX_PARAMETERS` — parameters of the backbone, its SCE copy, the MPD, the content gate
  and the text encoder's word table (100 billion; Wan2.1-I2V-14B with a full-depth SCE copy is
  about 35 billion, Wan2.2-A14B's two experts, each with a full-depth SCE copy, about 62 billion).
* :data:`MAX_TOKENS` — tokens of one clip at the configured size (Wan's 720P, 81-frame clips are
  about 0.3 million).

Messages read ``field 'backbone.dim': expected ..., got ...``; ``GenPropModel.from_pretrained``
prefixes the file.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genprop.configs import CodecConfig, GenPropConfig, TextConfig

MAX_PARAMETERS = 100 * 10**9
MAX_TOKENS = 2**22
_BIG = 2**16  # widths, heads, depths, patch sizes and clip sizes stay below this


class ConfigError(ValueError):
    """A config field has the wrong type or an out-of-range value."""


def _fail(field: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"field {field!r}: expected {expected}, got {value!r}")


def check_int(value: Any, field: str, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) in ``[low, high]``, else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(field, f"an integer in [{low}, {high}]", value)
    return value


def check_float(
    value: Any, field: str, low: float, high: float, *, low_open: bool = False
) -> float:
    """``value`` if it is a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > low if low_open else value >= low) and value <= high:
        return float(value)
    bracket = "(" if low_open else "["
    raise _fail(field, f"a finite number in {bracket}{low:g}, {high:g}]", value)


def _check_choice(value: Any, field: str, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise _fail(field, f"one of {list(choices)}", value)


def _check_bool(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise _fail(field, "true or false", value)


def _check_optional_str(value: Any, field: str) -> None:
    if value is not None and not (isinstance(value, str) and value and "\x00" not in value):
        raise _fail(field, "null or a non-empty path string", value)


def _check_subfolder(value: Any, field: str) -> None:
    """A sub-folder name must stay inside its parent folder: relative and without ``..``."""
    _check_optional_str(value, field)
    if value is None:
        return
    for pure in (PurePosixPath(value), PureWindowsPath(value)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            raise _fail(field, "a relative sub-folder name without '..'", value)


def _dit_parameters(cfg: GenPropConfig, latent_channels: int) -> tuple[int, int, int]:
    """(backbone, one block, head-side extras) parameter counts of the tiny DiT."""
    bb = cfg.backbone
    d, hidden, p2 = bb.dim, int(bb.dim * bb.mlp_ratio), bb.patch**2
    block = 10 * d * d + 10 * d + 2 * d * hidden + hidden + 2 * (d // bb.heads)
    if bb.text_cross_attention:
        block += 4 * d * d + 6 * d
    stem = (2 * latent_channels + 1) * p2 * d + d + 256 * d + d * d + 2 * d
    stem += cfg.text.dim * d + d * d + 2 * d + 2 * d * d + 2 * d
    head = d * p2 * latent_channels + p2 * latent_channels
    return stem + bb.depth * block + head, block, d


def _wan_transformer_parameters(tc: dict[str, Any], field: str) -> tuple[int, int, int, int]:
    """(whole transformer, one block, depth, width) of a diffusers Wan transformer config."""
    heads = check_int(tc.get("num_attention_heads", 40), f"{field}.num_attention_heads", 1, 1024)
    head_dim = check_int(tc.get("attention_head_dim", 128), f"{field}.attention_head_dim", 1, 4096)
    d = heads * head_dim
    if d > _BIG:
        raise _fail(f"{field}.num_attention_heads", f"heads x head_dim <= {_BIG}", heads)
    depth = check_int(tc.get("num_layers", 40), f"{field}.num_layers", 1, 1024)
    ffn = check_int(tc.get("ffn_dim", 13824), f"{field}.ffn_dim", 1, 16 * _BIG)
    in_ch = check_int(tc.get("in_channels", 36), f"{field}.in_channels", 1, 4096)
    out_ch = check_int(tc.get("out_channels", 16), f"{field}.out_channels", 1, 4096)
    text_dim = check_int(tc.get("text_dim", 4096), f"{field}.text_dim", 1, _BIG)
    freq_dim = check_int(tc.get("freq_dim", 256), f"{field}.freq_dim", 1, _BIG)
    patch = tc.get("patch_size", [1, 2, 2])
    if not isinstance(patch, list | tuple) or len(patch) != 3:
        raise _fail(f"{field}.patch_size", "a list of 3 integers", patch)
    cells = math.prod(check_int(p, f"{field}.patch_size", 1, 64) for p in patch)
    block = 8 * d * d + 8 * d + 2 * d * ffn + ffn + d + 6 * d + 2 * d
    image_dim = tc.get("image_dim")
    if image_dim is not None:
        block += 2 * d * d + 2 * d
    stem = in_ch * cells * d + d + text_dim * d + d * d + 2 * d
    stem += freq_dim * d + d * d + 6 * d * d + 8 * d
    head = d * out_ch * cells + out_ch * cells + 2 * d
    return stem + depth * block + head, block, depth, d


def _latent_channels(codec: CodecConfig) -> tuple[int, int, int]:
    """(latent channels, spatial factor, temporal factor) the codec config describes."""
    if codec.kind == "space_to_depth":
        return 3 * codec.patch**2, codec.patch, 1
    vae = codec.vae_config or {}
    z = vae.get("z_dim", 16)
    z = check_int(z, "codec.vae_config.z_dim", 1, 4096)
    return z, 8, 4


def _check_codec(codec: CodecConfig) -> None:
    _check_choice(codec.kind, "codec.kind", ("space_to_depth", "wan_vae"))
    check_int(codec.patch, "codec.patch", 1, 64)
    check_float(codec.shift, "codec.shift", -1e6, 1e6)
    check_float(codec.scale, "codec.scale", 0.0, 1e6, low_open=True)
    _check_optional_str(codec.path, "codec.path")
    _check_subfolder(codec.subfolder, "codec.subfolder")
    if codec.vae_config is not None and not isinstance(codec.vae_config, dict):
        raise _fail("codec.vae_config", "null or an object", codec.vae_config)


def _check_text(text: TextConfig) -> None:
    _check_choice(text.kind, "text.kind", ("hashing", "transformers"))
    check_int(text.dim, "text.dim", 1, _BIG)
    check_int(text.max_tokens, "text.max_tokens", 1, 8192)
    check_int(text.buckets, "text.buckets", 1, 2**24)
    check_int(text.seed, "text.seed", 0, 2**63 - 1)
    _check_optional_str(text.path, "text.path")


def _backbone_parameters(cfg: GenPropConfig, latent_channels: int) -> tuple[int, int, int, int]:
    """Check the backbone fields; (parameters, one block, depth, width)."""
    bb = cfg.backbone
    _check_choice(bb.kind, "backbone.kind", ("dit", "wan"))
    _check_bool(bb.gradient_checkpointing, "backbone.gradient_checkpointing")
    if bb.kind == "dit":
        check_int(bb.dim, "backbone.dim", 1, _BIG)
        check_int(bb.depth, "backbone.depth", 1, 1024)
        check_int(bb.heads, "backbone.heads", 1, 1024)
        if bb.dim % bb.heads:
            raise _fail("backbone.dim", f"a multiple of backbone.heads ({bb.heads})", bb.dim)
        check_int(bb.patch, "backbone.patch", 1, 64)
        check_float(bb.mlp_ratio, "backbone.mlp_ratio", 0.0, 64.0, low_open=True)
        check_float(bb.rope_theta, "backbone.rope_theta", 1.0, 1e12)
        check_float(bb.t_min, "backbone.t_min", 0.0, 1.0, low_open=True)
        _check_choice(bb.prediction, "backbone.prediction", ("x0", "velocity"))
        _check_bool(bb.text_cross_attention, "backbone.text_cross_attention")
        _check_bool(bb.first_frame_broadcast, "backbone.first_frame_broadcast")
        total, block, width = _dit_parameters(cfg, latent_channels)
        return total, block, bb.depth, width
    for name, value in vars(bb).items():
        if name == "path" or name.endswith("_path"):
            _check_optional_str(value, f"backbone.{name}")
        elif name.startswith("subfolder"):
            _check_subfolder(value, f"backbone.{name}")
    if getattr(bb, "boundary_ratio", None) is not None:  # Wan2.2-A14B's expert switch time
        check_float(bb.boundary_ratio, "backbone.boundary_ratio", 0.0, 1.0)
    configs = {
        name: value
        for name, value in vars(bb).items()
        if name.startswith("transformer") and name.endswith("config")
    }
    for name, value in configs.items():
        if value is not None and not isinstance(value, dict):
            raise _fail(f"backbone.{name}", "null or an object", value)
    if bb.transformer_config is None:
        return 0, 0, 0, 0  # read from ``path`` when the model is built; checked there
    total, block, depth, width = _wan_transformer_parameters(
        bb.transformer_config, "backbone.transformer_config"
    )
    for name, value in configs.items():  # e.g. a second expert (Wan2.2-A14B)
        if name != "transformer_config" and value is not None:
            total += _wan_transformer_parameters(value, f"backbone.{name}")[0]
    return total, block, depth, width


def _experts(cfg: GenPropConfig) -> int:
    """Backbone experts (each with its own SCE and MPD): 2 for Wan2.2-A14B, else 1."""
    if cfg.backbone.kind != "wan":
        return 1
    others = [
        v
        for k, v in vars(cfg.backbone).items()
        if k.startswith("transformer_") and k.endswith("config") and k != "transformer_config"
    ]
    return 1 + sum(v is not None for v in others)


def estimate_parameters(cfg: GenPropConfig) -> int:
    """Parameters (and table entries) of the model ``cfg`` describes, computed without building it.

    Counts the backbone, the SCE copy of ``sce_blocks`` blocks with their injection MLPs, the MPD
    (one block and a head; both per expert), the content gate and the hashing text encoder's word
    table. The codec
    and a ``transformers`` text encoder (read from their folders) are not counted. Assumes the
    fields are valid (call :func:`check_config`).
    """
    latent_channels = _latent_channels(cfg.codec)[0]
    backbone, block, _, d = _backbone_parameters(cfg, latent_channels)
    p2 = cfg.backbone.patch**2 if cfg.backbone.kind == "dit" else 4
    sce = cfg.sce_blocks * (block + 2 * d * d + 2 * d) + d * d + d
    mpd = block + 2 * d + d * d + d + (d + 1) * p2
    gate = (d * d + d + (d + 1) * p2 * latent_channels + 1) if cfg.content_gate else 0
    table = cfg.text.buckets * cfg.text.dim if cfg.text.kind == "hashing" else 0
    return backbone + _experts(cfg) * (sce + mpd) + gate + table + 8 * d


def check_config(cfg: GenPropConfig) -> None:
    """Check every field of ``cfg`` and the parameter and token budgets.

    Raises:
        ConfigError: naming the first bad field (``'backbone.dim'``, ``'codec.scale'``, ...), what
            was expected and the value found.
    """
    _check_codec(cfg.codec)
    _check_text(cfg.text)
    check_int(cfg.num_frames, "num_frames", 1, 4096)
    check_int(cfg.height, "height", 1, _BIG)
    check_int(cfg.width, "width", 1, _BIG)
    check_float(cfg.timestep_shift, "timestep_shift", 0.0, 1e3, low_open=True)
    _check_bool(cfg.content_gate, "content_gate")
    try:
        cfg.sampling.check()
    except ValueError as err:
        raise ConfigError(str(err)) from None
    latent_channels, spatial, _ = _latent_channels(cfg.codec)
    _, _, depth, _ = _backbone_parameters(cfg, latent_channels)
    check_int(cfg.sce_blocks, "sce_blocks", 1, max(1, depth) if depth else 1024)
    patch = cfg.backbone.patch if cfg.backbone.kind == "dit" else 2
    cell = spatial * patch
    tokens = cfg.num_frames * -(-cfg.height // cell) * -(-cfg.width // cell)
    if tokens > MAX_TOKENS:
        raise _fail(
            "num_frames",
            f"a clip of at most {MAX_TOKENS} tokens (num_frames x height x width / {cell}^2)",
            cfg.num_frames,
        )
    params = estimate_parameters(cfg)
    if params > MAX_PARAMETERS:
        raise ConfigError(
            f"config describes a model of about {params / 1e9:.1f} billion parameters, above "
            f"the limit of {MAX_PARAMETERS / 1e9:g} billion "
            "(genprop.config_checks.MAX_PARAMETERS); "
            "check backbone.dim / backbone.depth / sce_blocks / text.buckets"
        )
