"""Which diffusers Wan transformer configs GenProp runs, and a one-line error for the rest.

Supported (``WanTransformer3DModel``), with I2V channel concatenation (``in = 2·z_dim + 4``):

* Wan2.1-I2V-14B-480P / 720P: ``image_dim`` 1280 + ``added_kv_proj_dim`` 5120 (CLIP image tokens
  of the first frame, read by every block's cross-attention through ``add_k_proj/add_v_proj``);
* Wan2.2-I2V-A14B: no image tokens, two experts (``transformer`` / ``transformer_2``) routed by
  timestep at the pipeline's ``boundary_ratio``;

and with first-frame latent replacement (``in_channels == out_channels == z_dim``, the pipeline's
``expand_timesteps``): Wan2.2-TI2V-5B (48-channel VAE with patch 2).

Refused with the field that gives them away: other classes (CogVideoX, LTX, ...), Wan2.1-FLF2V
(``pos_embed_seq_len``: first *and last* frame image tokens), VACE / Animate (extra fields) and
text-to-video (``in_channels == out_channels`` without ``expand_timesteps``: no first frame).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

WAN_CLASS = "WanTransformer3DModel"
SUPPORTED = (
    "WanTransformer3DModel image-to-video checkpoints Wan2.1-I2V-14B-480P/720P, "
    "Wan2.2-I2V-A14B (in_channels = 2*z_dim + 4) and Wan2.2-TI2V-5B (expand_timesteps)"
)
# Text tokens the Wan cross-attention expects in front of which the image tokens sit: diffusers'
# WanAttnProcessor splits ``encoder_hidden_states`` as ``[image tokens, last 512 text tokens]``.
WAN_TEXT_TOKENS_WITH_IMAGE = 512


def _init_fields() -> set[str]:
    from diffusers import WanTransformer3DModel

    return set(inspect.signature(WanTransformer3DModel.__init__).parameters) - {"self"}


def check_transformer_config(
    config: Mapping[str, Any], *, where: str, expand_timesteps: bool = False
) -> None:
    """Raise a one-line ValueError unless ``config`` is a supported Wan I2V transformer.

    Args:
        config: The transformer's ``config.json`` as a dict (``_class_name`` optional).
        where: What to name in the message (the file, or ``config.backbone``).
        expand_timesteps: The pipeline's ``expand_timesteps`` (first-frame latent replacement).

    Raises:
        ValueError: Naming the class or field found and what is supported.
    """
    name = config.get("_class_name", WAN_CLASS)
    if name != WAN_CLASS:
        raise ValueError(f"{where}: _class_name {name!r} is not supported (supported: {SUPPORTED})")
    extra = sorted(k for k in config if not k.startswith("_") and k not in _init_fields())
    if extra:
        raise ValueError(
            f"{where}: fields {extra} are not WanTransformer3DModel's (a VACE / Animate / other "
            f"variant; supported: {SUPPORTED})"
        )
    if config.get("pos_embed_seq_len") is not None:
        raise ValueError(
            f"{where}: pos_embed_seq_len {config['pos_embed_seq_len']} marks Wan2.1-FLF2V "
            f"(first-last-frame), not supported (supported: {SUPPORTED})"
        )
    patch = config.get("patch_size", (1, 2, 2))
    if not (isinstance(patch, list | tuple) and len(patch) == 3):
        raise ValueError(f"{where}: patch_size {patch!r}, expected 3 integers (t, h, w)")
    c_in, c_out = config.get("in_channels", 16), config.get("out_channels", 16)
    if expand_timesteps:
        if c_in != c_out or config.get("image_dim") is not None:
            raise ValueError(
                f"{where}: in_channels {c_in} / out_channels {c_out} / image_dim "
                f"{config.get('image_dim')}: first-frame replacement (expand_timesteps) needs "
                "in_channels == out_channels and no image tokens (as Wan2.2-TI2V-5B)"
            )
        return
    if c_in == c_out:
        raise ValueError(
            f"{where}: in_channels {c_in} == out_channels {c_out} without expand_timesteps: a "
            f"text-to-video transformer (no first frame), not supported (supported: {SUPPORTED})"
        )
    if (config.get("image_dim") is None) != (config.get("added_kv_proj_dim") is None):
        raise ValueError(
            f"{where}: image_dim {config.get('image_dim')} and added_kv_proj_dim "
            f"{config.get('added_kv_proj_dim')} must be both set (CLIP image tokens) or both null"
        )
