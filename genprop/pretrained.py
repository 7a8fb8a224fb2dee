"""GenProp on a pretrained Wan2.x image-to-video backbone read from a local diffusers folder.

:func:`wan_config` turns a Wan2.x I2V diffusers pipeline folder into a :class:`GenPropConfig`
(``GenPropModel.from_config`` then loads the weights, locally, nothing is downloaded)::

    PATH/transformer/config.json (+ weights)   WanTransformer3DModel (I2V: in = 2·z_dim + 4)
    PATH/vae/config.json (+ weights)           AutoencoderKLWan
    PATH/text_encoder/config.json (+ weights)  UMT5 (or T5) encoder
    PATH/tokenizer/                            its tokenizer

The folder is checked before any weight is read: the transformer and VAE are built on the
``meta`` device (no memory) and handed to GenProp's Wan adapter and codec, so an unsupported
checkpoint is refused with the adapter's own error (e.g. Wan2.1-I2V's CLIP image tokens,
``image_dim``, or Wan2.2-TI2V-5B's 48-channel concat layout). Wan2.2-I2V-A14B (no image tokens)
is supported; its MoE low-noise expert is ``transformer_subfolder="transformer_2"``.

:func:`write_tiny_wan_pipeline` writes a tiny random folder of that layout (seconds on a CPU),
for tests and for trying the whole path without downloading a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genprop.configs import CodecConfig, GenPropConfig, TextConfig, WanConfig
from genprop.jsonfile import read_json_object

WAN_LAYOUT = (
    "expected a local Wan2.x I2V diffusers folder: transformer/config.json, vae/config.json, "
    "text_encoder/config.json (each with its weights) and tokenizer/"
)

# Tiny shapes (as in diffusers' own Wan tests): 2 heads x 12; in = 16 (x_t) + 4 (mask) + 16 (first).
TINY_WAN_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=36,
    out_channels=16,
    text_dim=16,
    freq_dim=32,
    ffn_dim=32,
    num_layers=3,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
TINY_WAN_VAE: dict[str, Any] = dict(
    base_dim=3,
    z_dim=16,
    dim_mult=[1, 1, 1, 1],
    num_res_blocks=1,
    temperal_downsample=[False, True, True],
)
TINY_WORDS = (
    *("<pad>", "</s>", "<unk>", "track", "colored", "regions", "remove", "the", "a", "red"),
    *("car", "object", "edit", "insert", "removal", "insertion", "tracking", "outpainting", "test"),
)


def _require(root: Path, transformer_subfolder: str) -> None:
    """Raise FileNotFoundError naming the first missing piece of the pipeline layout."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder ({WAN_LAYOUT})")
    for rel in (f"{transformer_subfolder}/config.json", "vae/config.json"):
        if not (root / rel).is_file():
            raise FileNotFoundError(f"{root / rel}: missing ({WAN_LAYOUT})")
    if not (root / "text_encoder" / "config.json").is_file():
        raise FileNotFoundError(f"{root / 'text_encoder' / 'config.json'}: missing ({WAN_LAYOUT})")
    if not (root / "tokenizer").is_dir():
        raise FileNotFoundError(f"{root / 'tokenizer'}: missing folder ({WAN_LAYOUT})")


def _check_on_meta(root: Path, transformer_subfolder: str) -> tuple[Any, Any]:
    """Build transformer + VAE on the meta device and run the adapter's and codec's checks.

    Returns:
        (WanBackbone, DiffusersVAECodec), both on the meta device (shapes only).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from genprop.backbones.wan import WanBackbone
    from genprop.codec import DiffusersVAECodec

    t_cfg = read_json_object(root / transformer_subfolder / "config.json", what="JSON config")
    v_cfg = read_json_object(root / "vae" / "config.json", what="JSON config")
    with torch.device("meta"):
        try:
            transformer = WanTransformer3DModel.from_config(t_cfg)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{root / transformer_subfolder / 'config.json'}: {err}") from err
        try:
            codec = DiffusersVAECodec(AutoencoderKLWan.from_config(v_cfg))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{root / 'vae' / 'config.json'}: {err}") from err
        backbone = WanBackbone(
            transformer, latent_channels=codec.latent_channels, mask_channels=codec.temporal_factor
        )
    return backbone, codec


def wan_config(
    path: str | Path,
    *,
    sce_blocks: int | None = None,
    num_frames: int = 33,
    height: int = 480,
    width: int = 832,
    text_max_tokens: int = 512,
    timestep_shift: float = 3.0,
    transformer_subfolder: str = "transformer",
) -> GenPropConfig:
    """A GenProp config for the Wan2.x I2V diffusers pipeline folder at ``path``.

    Args:
        path: Local pipeline folder (layout in the module docstring); stored resolved, so exports
            made from this config find the (never saved) text encoder again.
        sce_blocks: Backbone blocks copied into the Selective Content Encoder. Default: half the
            transformer's layers (20 of Wan-14B's 40; the paper copies 24 of 40 on its own I2V
            model, ``sce_blocks=24`` reproduces that ratio).
        num_frames: Pixel frames per clip, 1 + a multiple of the VAE's temporal factor (4k + 1).
        height: Pixel height, a multiple of VAE spatial factor x patch size (16 for Wan2.1/2.2).
        width: Pixel width, same rule (default 480x832: Wan's 480P size).
        text_max_tokens: Prompt tokens kept (Wan's pipelines use 512).
        timestep_shift: Flow-time shift of training and sampling (Wan's 480P value: 3.0; 720P: 5.0).
        transformer_subfolder: ``transformer`` (or Wan2.2-A14B's low-noise ``transformer_2``).

    Raises:
        FileNotFoundError: A part of the layout is missing (named, with the expected layout).
        ValueError: The checkpoint or geometry is not supported (names the field and rule).
    """
    root = Path(path).expanduser().resolve()
    _require(root, transformer_subfolder)
    backbone, codec = _check_on_meta(root, transformer_subfolder)
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
    if not 1 <= blocks <= depth:
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
    return GenPropConfig(
        backbone=WanConfig(path=str(root), subfolder=transformer_subfolder),
        codec=CodecConfig(kind="wan_vae", path=str(root), subfolder="vae"),
        text=TextConfig(
            kind="transformers", path=str(root), dim=text_dim, max_tokens=text_max_tokens
        ),
        sce_blocks=blocks,
        num_frames=num_frames,
        height=height,
        width=width,
        timestep_shift=timestep_shift,
    )


def write_tiny_wan_pipeline(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Wan2.x I2V pipeline folder (the layout :func:`wan_config` reads).

    Transformer :data:`TINY_WAN_TRANSFORMER` (3 layers, text_dim 16), VAE :data:`TINY_WAN_VAE`
    (8x spatial, 4x temporal, 16 channels), a 1-layer random UMT5 encoder (d_model 16) and a
    word-level tokenizer over :data:`TINY_WORDS` built offline. Geometry it accepts: frames 4k+1,
    height and width multiples of 16 (e.g. 5x32x32). The global RNG state is left untouched.

    Args:
        directory: Folder to write (created; existing files of the layout are overwritten).
        seed: Seed of all random weights (same seed -> identical files).

    Returns:
        The folder, for :func:`wan_config`.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(TINY_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(root / "tokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        WanTransformer3DModel.from_config(dict(TINY_WAN_TRANSFORMER)).save_pretrained(
            root / "transformer"
        )
        AutoencoderKLWan.from_config(dict(TINY_WAN_VAE)).save_pretrained(root / "vae")
        text_cfg = UMT5Config(
            vocab_size=len(TINY_WORDS),
            d_model=TINY_WAN_TRANSFORMER["text_dim"],
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
        )
        UMT5EncoderModel(text_cfg).save_pretrained(root / "text_encoder")
    return root
