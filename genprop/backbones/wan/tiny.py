"""Tiny random Wan2.x pipeline folders in each model's real diffusers layout (seconds on a CPU).

For tests and for trying cache -> train -> propagate with no download. The folder is written by
diffusers' own ``WanImageToVideoPipeline.save_pretrained`` (``model_index.json`` and one folder per
component), with the variant's structure and tiny widths:

* ``wan2.1-i2v``: one transformer with CLIP image tokens (``image_dim``) + ``image_encoder/``
  (a 2-layer ``CLIPVisionModel``, 32 px) + ``image_processor/``;
* ``wan2.2-a14b`` (default; ``experiment=wan_paper``'s model): ``transformer`` and
  ``transformer_2`` experts, ``boundary_ratio`` 0.9;
* ``wan2.2-ti2v``: a 48-channel transformer and VAE (patch 2), ``expand_timesteps`` (GenProp
  refuses it: not yet supported).

All share a 1-layer random UMT5 (d_model 16) with a word-level tokenizer over :data:`TINY_WORDS`.
Geometry they accept: frames 4k+1, height and width multiples of 16 (e.g. 5x32x32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

VARIANTS = ("wan2.1-i2v", "wan2.2-a14b", "wan2.2-ti2v")
DEFAULT_VARIANT = "wan2.2-a14b"
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
# Wan2.1-I2V: CLIP image tokens of width 16 through add_k_proj/add_v_proj (inner dim 24).
TINY_IMAGE_TOKENS: dict[str, Any] = dict(image_dim=16, added_kv_proj_dim=24)
TINY_CLIP: dict[str, Any] = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)
TINY_TI2V_VAE: dict[str, Any] = dict(
    base_dim=4,
    decoder_base_dim=4,
    z_dim=48,
    dim_mult=[1, 1, 1, 1],
    num_res_blocks=1,
    temperal_downsample=[False, True, True],
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_spatial=16,
    latents_mean=[0.0] * 48,
    latents_std=[1.0] * 48,
)
TINY_WORDS = (
    *("<pad>", "</s>", "<unk>", "track", "colored", "regions", "remove", "the", "a", "red"),
    *("car", "object", "edit", "insert", "removal", "insertion", "tracking", "outpainting", "test"),
)
# Scheduler flow_shift per variant, as diffusers' conversion script writes it.
_FLOW_SHIFT = {"wan2.1-i2v": 3.0, "wan2.2-a14b": 3.0, "wan2.2-ti2v": 5.0}


def tiny_tokenizer() -> Any:
    """A word-level ``PreTrainedTokenizerFast`` over :data:`TINY_WORDS` (pad, eos, unk first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(TINY_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def write_tiny_wan_pipeline(
    directory: str | Path, seed: int = 0, *, variant: str = DEFAULT_VARIANT
) -> Path:
    """Write a tiny random Wan pipeline folder of ``variant`` (see module docstring).

    Args:
        directory: Folder to write (created; existing files of the layout are overwritten).
        seed: Seed of all random weights (same seed -> identical files; the global RNG state is
            left untouched).
        variant: One of :data:`VARIANTS`.

    Returns:
        The folder, for :func:`genprop.backbones.wan.pretrained.wan_config`.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    if variant not in VARIANTS:
        raise ValueError(f"variant: {variant!r}, expected one of {', '.join(VARIANTS)}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Any] = {}
    t_cfg = dict(TINY_WAN_TRANSFORMER)
    vae_cfg = dict(TINY_WAN_VAE)
    if variant == "wan2.1-i2v":
        t_cfg.update(TINY_IMAGE_TOKENS)
    elif variant == "wan2.2-ti2v":
        t_cfg.update(in_channels=48, out_channels=48)
        vae_cfg = dict(TINY_TI2V_VAE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts["transformer"] = WanTransformer3DModel.from_config(t_cfg)
        if variant == "wan2.2-a14b":
            parts["transformer_2"] = WanTransformer3DModel.from_config(t_cfg)
            parts["boundary_ratio"] = 0.9
        if variant == "wan2.1-i2v":
            parts["image_encoder"] = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP))
            size = TINY_CLIP["image_size"]
            parts["image_processor"] = CLIPImageProcessorPil(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size}
            )
        if variant == "wan2.2-ti2v":
            parts["expand_timesteps"] = True
        parts["vae"] = AutoencoderKLWan.from_config(vae_cfg)
        parts["text_encoder"] = tiny_text_encoder(t_cfg["text_dim"])
    return save_wan_pipeline(root, parts, flow_shift=_FLOW_SHIFT[variant])


def tiny_text_encoder(d_model: int) -> Any:
    """A random one-layer ``UMT5EncoderModel`` over :data:`TINY_WORDS`, ``d_model`` wide (the
    transformer's ``text_dim``)."""
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=len(TINY_WORDS), d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2
    )
    return UMT5EncoderModel(cfg)


def save_wan_pipeline(directory: str | Path, parts: dict[str, Any], *, flow_shift: float) -> Path:
    """Write a Wan pipeline folder with diffusers' ``save_pretrained``.

    Args:
        directory: Folder to write.
        parts: The pipeline's components and options (``transformer``, ``vae``,
            ``text_encoder``, optionally ``transformer_2`` + ``boundary_ratio``,
            ``image_encoder`` + ``image_processor``, ``expand_timesteps``); the tokenizer is
            :func:`tiny_tokenizer`'s.
        flow_shift: The flow-matching UniPC scheduler's shift.

    Returns:
        The folder.
    """
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline

    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=flow_shift,
    )
    # TI2V is a WanPipeline (text-to-video pipeline class with expand_timesteps), as published.
    pipeline_cls = WanPipeline if parts.get("expand_timesteps") else WanImageToVideoPipeline
    pipe = pipeline_cls(tokenizer=tiny_tokenizer(), scheduler=scheduler, **parts)
    pipe.save_pretrained(Path(directory))
    return Path(directory)
