"""Parameter counts of a Wan2.x backbone from its diffusers transformer config(s) alone.

Used by the config budget (:func:`genprop.config_checks.estimate_parameters`) before anything is
built: a published 14B config must pass (about 35 billion parameters with a full-depth SCE copy)
and a config.json asking for a billion layers must fail with the field named. The formula follows
diffusers' ``WanTransformer3DModel`` (self- and cross-attention with qk-norms, FFN, AdaLN tables,
the condition embedder and the output head); image-token projections (Wan2.1-I2V) add the extra
key / value maps of each block. ``tests/genprop/test_config_checks.py`` compares it with built
models.
"""

from __future__ import annotations

import math
from typing import Any

from genprop.backbones.family import ParameterEstimate
from genprop.backbones.wan.config import WanConfig, transformer_configs
from genprop.field_checks import BIG, check_int, config_error


def transformer_parameters(tc: dict[str, Any], field: str) -> ParameterEstimate:
    """(whole transformer, one block, depth, width) of a diffusers Wan transformer config.

    Args:
        tc: The transformer's ``config.json`` dict (missing fields: diffusers' Wan-14B defaults).
        field: Its dotted name in the GenProp config, for errors (``backbone.transformer_config``).

    Raises:
        ConfigError: naming the first field of ``tc`` out of range.
    """
    heads = check_int(tc.get("num_attention_heads", 40), f"{field}.num_attention_heads", 1, 1024)
    head_dim = check_int(tc.get("attention_head_dim", 128), f"{field}.attention_head_dim", 1, 4096)
    d = heads * head_dim
    if d > BIG:
        raise config_error(f"{field}.num_attention_heads", f"heads x head_dim <= {BIG}", heads)
    depth = check_int(tc.get("num_layers", 40), f"{field}.num_layers", 1, 1024)
    ffn = check_int(tc.get("ffn_dim", 13824), f"{field}.ffn_dim", 1, 16 * BIG)
    in_ch = check_int(tc.get("in_channels", 36), f"{field}.in_channels", 1, 4096)
    out_ch = check_int(tc.get("out_channels", 16), f"{field}.out_channels", 1, 4096)
    text_dim = check_int(tc.get("text_dim", 4096), f"{field}.text_dim", 1, BIG)
    freq_dim = check_int(tc.get("freq_dim", 256), f"{field}.freq_dim", 1, BIG)
    patch = tc.get("patch_size", [1, 2, 2])
    if not isinstance(patch, list | tuple) or len(patch) != 3:
        raise config_error(f"{field}.patch_size", "a list of 3 integers", patch)
    cells = math.prod(check_int(p, f"{field}.patch_size", 1, 64) for p in patch)
    block = 8 * d * d + 8 * d + 2 * d * ffn + ffn + d + 6 * d + 2 * d
    if tc.get("image_dim") is not None:  # image-token key / value projections of each block
        block += 2 * d * d + 2 * d
    stem = in_ch * cells * d + d + text_dim * d + d * d + 2 * d
    stem += freq_dim * d + d * d + 6 * d * d + 8 * d
    head = d * out_ch * cells + out_ch * cells + 2 * d
    return ParameterEstimate(total=stem + depth * block + head, block=block, depth=depth, width=d)


def wan_parameter_estimate(
    cfg: WanConfig, *, latent_channels: int, mask_channels: int, text_dim: int
) -> ParameterEstimate:
    """The family's ``parameters``: every expert's transformer; block, depth and width of the
    first. All zero while ``transformer_config`` is unset (it is read from ``path`` when the
    model is built, and checked there). The codec and text widths are in the transformer config
    itself, so the keyword arguments are not read."""
    if cfg.transformer_config is None:
        return ParameterEstimate(total=0, block=0, depth=0, width=0)
    first = transformer_parameters(cfg.transformer_config, "backbone.transformer_config")
    total = first.total
    for name, value in transformer_configs(cfg).items():  # e.g. a second expert (Wan2.2-A14B)
        if name != "transformer_config" and value is not None:
            total += transformer_parameters(value, f"backbone.{name}").total
    return ParameterEstimate(total=total, block=first.block, depth=first.depth, width=first.width)


def wan_experts(cfg: WanConfig) -> int:
    """Transformers of the backbone (each with its own SCE and MPD): 2 for Wan2.2-A14B, else 1."""
    others = [v for k, v in transformer_configs(cfg).items() if k != "transformer_config"]
    return 1 + sum(v is not None for v in others)
