"""A local Wan2.x image-to-video diffusers folder -> the checked fields of a GenProp config.

The folder is the model's own diffusers layout (nothing is downloaded)::

    PATH/model_index.json                      pipeline class, boundary_ratio (Wan2.2-A14B)
    PATH/transformer/config.json (+ weights)   WanTransformer3DModel (I2V: in = 2·z_dim + 4)
    PATH/transformer_2/config.json (+ weights) Wan2.2-A14B's low-noise expert
    PATH/image_encoder/, PATH/image_processor/ Wan2.1-I2V's CLIP (transformer with image_dim)
    PATH/vae/config.json (+ weights)           AutoencoderKLWan
    PATH/text_encoder/config.json (+ weights)  UMT5 (or T5) encoder
    PATH/tokenizer/                            its tokenizer
    PATH/scheduler/scheduler_config.json       its scheduler and flow_shift (optional)

Everything is checked before any weight is read: the configs' classes and fields
(:mod:`genprop.backbones.wan.variants` names what is not supported), then the transformer(s) and VAE
are built on the ``meta`` device (no memory) and handed to GenProp's Wan adapter and codec.

:func:`read_wan_folder` is the Wan family's ``read_folder``: it returns the config in
``config.json`` form, which ``GenPropConfig.from_folder`` turns into a config (this module does not
import :mod:`genprop.configs`, which imports the family registry);
:func:`genprop.backbones.wan.folder.wan_config` is the same with a ``GenPropConfig`` out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from contracts.jsonfile import read_json_object
from genprop.backbones.wan.config import WanConfig
from genprop.backbones.wan.sampling import wan_sampling_defaults
from genprop.backbones.wan.variants import (
    SUPPORTED,
    WAN_TEXT_TOKENS_WITH_IMAGE,
    check_transformer_config,
)

WAN_LAYOUT = (
    "expected a local Wan2.x I2V diffusers folder: transformer/config.json, vae/config.json, "
    "text_encoder/config.json (each with its weights) and tokenizer/"
)
PIPELINES = ("WanImageToVideoPipeline", "WanPipeline")
# Wan's own sampling shift of Wan2.2-I2V-A14B (Wan2.2's wan/configs/wan_i2v_A14B.py).
A14B_SAMPLE_SHIFT = 5.0
DEFAULT_SHIFT = 3.0  # diffusers' conversion writes flow_shift 3.0 for Wan2.1-I2V


def _require(root: Path, *parts: str, why: str = WAN_LAYOUT) -> None:
    """Raise FileNotFoundError naming the first missing piece of the pipeline layout."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder ({WAN_LAYOUT})")
    for rel in parts:
        if not (root / rel).exists():
            kind = "folder" if "." not in rel.rsplit("/", 1)[-1] else "file"
            raise FileNotFoundError(f"{root / rel}: missing {kind} ({why})")


def _pipeline_index(root: Path) -> dict[str, Any]:
    """``model_index.json`` (empty when absent), its pipeline class checked."""
    path = root / "model_index.json"
    if not path.is_file():
        return {}
    index = read_json_object(path, what="pipeline index")
    name = index.get("_class_name")
    if name is not None and name not in PIPELINES:
        raise ValueError(
            f"{path}: _class_name {name!r} is not supported (supported: {', '.join(PIPELINES)} "
            f"with {SUPPORTED})"
        )
    if not isinstance(index.get("expand_timesteps", False), bool):
        raise ValueError(f"{path}: expand_timesteps {index['expand_timesteps']!r}, expected bool")
    return index


def _check_on_meta(
    root: Path, subfolders: list[str], expand_timesteps: bool
) -> tuple[list[Any], Any]:
    """Check the transformer config(s) and VAE, build them on the meta device.

    Returns:
        ([WanBackbone per subfolder], DiffusersVAECodec), on the meta device (shapes only).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from genprop.backbones.wan.backbone import WanBackbone
    from genprop.modeling.codec import DiffusersVAECodec

    t_cfgs = []
    for sub in subfolders:
        path = root / sub / "config.json"
        t_cfgs.append((path, read_json_object(path, what="JSON config")))
        check_transformer_config(t_cfgs[-1][1], where=str(path), expand_timesteps=expand_timesteps)
    v_cfg = read_json_object(root / "vae" / "config.json", what="JSON config")
    name = v_cfg.get("_class_name", "AutoencoderKLWan")
    if name != "AutoencoderKLWan":
        raise ValueError(
            f"{root / 'vae' / 'config.json'}: _class_name {name!r}, expected 'AutoencoderKLWan'"
        )
    backbones = []
    with torch.device("meta"):
        try:
            codec = DiffusersVAECodec(AutoencoderKLWan.from_config(v_cfg))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{root / 'vae' / 'config.json'}: {err}") from err
        for path, t_cfg in t_cfgs:
            try:
                transformer = WanTransformer3DModel.from_config(t_cfg)
                backbones.append(
                    WanBackbone(
                        transformer,
                        latent_channels=codec.latent_channels,
                        mask_channels=codec.temporal_factor,
                        first_frame_by_replacement=expand_timesteps,
                    )
                )
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}: {err}") from err
    return backbones, codec


def _default_shift(root: Path, index: dict[str, Any]) -> float:
    """Wan's own sampling shift: A14B's 5.0, else the folder's scheduler ``flow_shift``."""
    if index.get("boundary_ratio") is not None:
        return A14B_SAMPLE_SHIFT
    path = root / "scheduler" / "scheduler_config.json"
    if path.is_file():
        shift = read_json_object(path, what="scheduler config").get("flow_shift")
        if isinstance(shift, int | float) and shift > 0:
            return float(shift)
    return DEFAULT_SHIFT


def _check_image_encoder(root: Path, image_dim: int) -> None:
    why = (
        "a Wan transformer with image_dim reads CLIP tokens from image_encoder/ + image_processor/"
    )
    _require(root, "image_encoder/config.json", "image_processor", why=why)
    path = root / "image_encoder" / "config.json"
    width = read_json_object(path, what="JSON config").get("hidden_size")
    if width != image_dim:
        raise ValueError(
            f"{path}: hidden_size {width}, but the transformer's image_dim is {image_dim}"
        )


def read_wan_folder(
    path: str | Path,
    *,
    sce_blocks: int | None = None,
    num_frames: int = 33,
    height: int = 480,
    width: int = 832,
    text_max_tokens: int = 512,
    timestep_shift: float | None = None,
    transformer_subfolder: str = "transformer",
) -> dict[str, Any]:
    """The GenProp config of the Wan2.x I2V diffusers pipeline folder at ``path``, in
    ``config.json`` form (``GenPropConfig.to_dict``'s; absent fields keep their defaults).

    Args:
        path: Local pipeline folder (layout in the module docstring); stored resolved, so exports
            made from this config find the (never saved) text and image encoders again.
        sce_blocks: Backbone blocks copied into each Selective Content Encoder. Default: half the
            transformer's layers (20 of Wan-14B's 40; the paper copies 24 of 40 on its own I2V
            model, ``sce_blocks=24`` reproduces that ratio).
        num_frames: Pixel frames per clip, 1 + a multiple of the VAE's temporal factor (4k + 1).
        height: Pixel height, a multiple of VAE spatial factor x patch size (16 for Wan2.1/2.2).
        width: Pixel width, same rule (default 480x832: Wan's 480P size).
        text_max_tokens: Prompt tokens kept (Wan's pipelines use 512; models with CLIP image
            tokens need exactly 512).
        timestep_shift: Flow-time shift of training and sampling. None: the model's own —
            Wan2.2-A14B's sample_shift 5.0, else the folder's scheduler ``flow_shift`` (3.0 if
            there is none).
        transformer_subfolder: ``transformer`` (both experts of Wan2.2-A14B, routed at its
            ``boundary_ratio``), or one expert's folder alone (e.g. ``transformer_2``, no routing).

    Raises:
        FileNotFoundError: A part of the layout is missing (named, with the expected layout).
        ValueError: The checkpoint or geometry is not supported (names the file, field and rule).
    """
    root = Path(path).expanduser().resolve()
    _require(root, f"{transformer_subfolder}/config.json", "vae/config.json")
    _require(root, "text_encoder/config.json", "tokenizer")
    index = _pipeline_index(root)
    boundary = index.get("boundary_ratio") if transformer_subfolder == "transformer" else None
    subfolders = [transformer_subfolder]
    if boundary is not None:
        if not (isinstance(boundary, int | float) and 0.0 < boundary < 1.0):
            raise ValueError(
                f"{root / 'model_index.json'}: boundary_ratio {boundary}, expected (0, 1)"
            )
        _require(root, "transformer_2/config.json")
        subfolders.append("transformer_2")
    expand = bool(index.get("expand_timesteps", False))
    backbones, codec = _check_on_meta(root, subfolders, expand)
    backbone = backbones[0]
    _, ph, pw = backbone.patch_size
    fy, fx = codec.spatial_factor * ph, codec.spatial_factor * pw
    if height <= 0 or width <= 0 or height % fy or width % fx:
        raise ValueError(
            f"height/width: {height}x{width}, expected positive multiples of {fy}x{fx} "
            f"(VAE spatial factor {codec.spatial_factor} x transformer patch {ph}x{pw})"
        )
    if num_frames < 1:
        raise ValueError(f"num_frames: {num_frames}, expected 4k + 1 >= 1")
    codec.latent_frames(num_frames)  # raises for num_frames != 1 + k·temporal_factor
    depth = backbone.num_blocks
    blocks = depth // 2 if sce_blocks is None else sce_blocks
    if not 1 <= blocks <= min(b.num_blocks for b in backbones):
        raise ValueError(f"sce_blocks: {blocks}, expected 1..{depth} (the transformer's layers)")
    enc_cfg_path = root / "text_encoder" / "config.json"
    enc_cfg = read_json_object(enc_cfg_path, what="JSON config")
    text_dim = enc_cfg.get("d_model") or enc_cfg.get("hidden_size")
    if not isinstance(text_dim, int):
        raise ValueError(f"{enc_cfg_path}: field 'd_model' (or 'hidden_size') missing")
    if text_dim != backbone.text_dim:
        raise ValueError(
            f"{enc_cfg_path}: d_model {text_dim}, but the transformer's text_dim is "
            f"{backbone.text_dim} (text encoder and transformer are from different models)"
        )
    if text_max_tokens < 1:
        raise ValueError(f"text_max_tokens: {text_max_tokens}, expected >= 1")
    if backbone.image_dim is not None:
        _check_image_encoder(root, backbone.image_dim)
        if text_max_tokens != WAN_TEXT_TOKENS_WITH_IMAGE:
            raise ValueError(
                f"text_max_tokens: {text_max_tokens}, a Wan transformer with CLIP image tokens "
                f"needs {WAN_TEXT_TOKENS_WITH_IMAGE} (diffusers' attention takes the last 512 "
                "context tokens as text)"
            )
    shift = _default_shift(root, index) if timestep_shift is None else float(timestep_shift)
    wan = WanConfig(
        path=str(root),
        subfolder=transformer_subfolder,
        subfolder_2="transformer_2" if boundary is not None else None,
        boundary_ratio=None if boundary is None else float(boundary),
        image_encoder_path=str(root) if backbone.image_dim is not None else None,
        expand_timesteps=expand,
    )
    return {
        "backbone": dataclasses.asdict(wan),
        "codec": {"kind": "wan_vae", "path": str(root), "subfolder": "vae"},
        "text": {
            "kind": "transformers",
            "path": str(root),
            "dim": text_dim,
            "max_tokens": text_max_tokens,
        },
        "sce_blocks": blocks,
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "timestep_shift": shift,
        # Wan's own steps, guidance and scheduler (genprop.backbones.wan.sampling).
        "sampling": wan_sampling_defaults(
            root, a14b=index.get("boundary_ratio") is not None, ti2v=expand
        ),
    }
