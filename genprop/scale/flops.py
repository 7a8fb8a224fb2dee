"""Parameter and FLOP counts of GenProp models.

* :func:`count_parameters` / :func:`estimate_flops`: analytic, from a tiny-DiT config (no model is
  built), so GPU-size presets can be reported on a laptop; a test checks them against the modules.
  The parameter formula is the DiT family's (:mod:`genprop.backbones.dit.parameters`).
* :class:`PhaseFlopCounter`: counts what a step really runs, with torch's own FLOP formulas
  (``torch.utils.flop_counter``), split into frozen-encoder work, forward and backward. It works on
  any backbone and on the ``meta`` device (``genprop.scale.meta_step`` runs whole steps there), and
  is the counter behind ``genprop-plan`` and the GPU benchmark's MFU.

FLOPs count a multiply-add as 2 and include attention score/value products; norms, activations and
RoPE are ignored (< 1 %).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from contracts.tasks import TASKS
from genprop.backbones.dit.parameters import (
    DiTSizes,
    backbone_parameters,
    block_parameters,
    linear,
    patch_embed_parameters,
)
from genprop.configs import GenPropConfig, preset
from genprop.modeling.learned_codec import build_learned_codec


def _codec_geometry(cfg: GenPropConfig) -> tuple[int, int]:
    """(latent channels, pixels per latent cell along H and W) of the config's codec."""
    c = cfg.codec
    if c.kind == "space_to_depth":
        return 3 * c.patch**2, c.patch
    if c.kind == "learned":  # per frame: one latent frame per pixel frame
        return c.latent_channels, c.unshuffle * 2**c.downsamples
    raise ValueError("flops: analytic counts cover the space_to_depth and learned codecs only")


def _dims(cfg: GenPropConfig) -> DiTSizes:
    """The tiny DiT's sizes on the config's per-frame codec (what the analytic counts cover)."""
    channels, _ = _codec_geometry(cfg)
    try:
        return DiTSizes.of(
            cfg.backbone,
            latent_channels=channels,
            mask_channels=1,  # per-frame codecs: one pixel frame per latent frame
            text_dim=cfg.text.dim,
        )
    except ValueError as err:
        raise ValueError(f"flops: {err}") from None


def _learned_codec_parameters(cfg: GenPropConfig) -> int:
    """Parameters of a learned codec (frozen, part of the model's weights), counted on the meta
    device from its architecture fields."""
    with torch.device("meta"):
        codec = build_learned_codec(cfg.codec, load_weights=False)
    return sum(p.numel() for p in codec.parameters())


def count_parameters(cfg: GenPropConfig) -> dict[str, int]:
    """Parameters per component: backbone, sce, mpd, task_embedding, content_gate, codec (a
    learned codec's frozen weights; 0 for space-to-depth), total.

    The backbone and block counts are the DiT family's own
    (:mod:`genprop.backbones.dit.parameters`), the ones the config budget uses.
    """
    k = _dims(cfg)
    d, embed, block = k.d, patch_embed_parameters(k), block_parameters(k)
    backbone = backbone_parameters(k)
    n = cfg.sce_blocks
    sce = embed + n * block + linear(d, d) + n * 2 * linear(d, d)
    mpd = block + 2 * d + linear(d, d) + linear(d, k.p * k.p)
    task = (len(TASKS) + 1) * d
    gate = linear(d, d) + linear(d, k.p * k.p * k.c) + 1 if cfg.content_gate else 0
    codec = _learned_codec_parameters(cfg) if cfg.codec.kind == "learned" else 0
    return {
        "backbone": backbone,
        "sce": sce,
        "mpd": mpd,
        "task_embedding": task,
        "content_gate": gate,
        "codec": codec,
        "total": backbone + sce + mpd + task + gate + codec,
    }


def _block_flops(k: DiTSizes, tokens: int, text_tokens: int) -> int:
    d = k.d
    per_token = 3 * d * d + d * d + 2 * d * k.hidden  # qkv, out, mlp
    flops = 2 * tokens * per_token + 4 * tokens * tokens * d  # + scores and values
    if k.ca:
        flops += 2 * tokens * 2 * d * d + 2 * text_tokens * 2 * d * d + 4 * tokens * text_tokens * d
    return flops


def estimate_flops(cfg: GenPropConfig, *, batch: int = 1) -> dict[str, int]:
    """Forward FLOPs of one denoising step at the config's clip size (the diffusion model; the
    frozen codec's encode / decode are not counted).

    Returns:
        tokens (per sample), backbone_forward, genprop_forward (backbone + SCE + MPD + gate),
        genprop_train_step (≈ forward + backward of everything = 3 x genprop_forward).
    """
    k = _dims(cfg)
    p = _codec_geometry(cfg)[1] * k.p
    tokens = cfg.num_frames * (cfg.height // p) * (cfg.width // p)
    text_tokens = cfg.text.max_tokens if k.ca else 0
    embed = 2 * tokens * k.cin * k.p * k.p * k.d
    block = _block_flops(k, tokens, text_tokens)
    head = 2 * tokens * k.d * k.p * k.p * k.c
    head += 2 * tokens * k.p * k.p * 2 * 9 * k.c * k.conv  # the residual convolution, if any
    backbone = embed + k.depth * block + head
    sce = embed + cfg.sce_blocks * (block + 2 * tokens * 2 * k.d * k.d) + 2 * tokens * k.d * k.d
    mpd = block + 2 * tokens * (k.d * k.d + k.d * k.p * k.p)
    gate = 2 * tokens * (k.d * k.d + k.d * k.p * k.p * k.c) if cfg.content_gate else 0
    genprop = backbone + sce + mpd + gate
    return {
        "tokens": tokens,
        "backbone_forward": batch * backbone,
        "genprop_forward": batch * genprop,
        "genprop_train_step": 3 * batch * genprop,
    }


def model_report(
    names: tuple[str, ...] = ("cpu_test", "demo", "demo_latent", "small", "base", "large"),
) -> list[dict]:
    """One row per preset: name, parameter counts and FLOPs (JSON-friendly)."""
    rows = []
    for name in names:
        cfg = preset(name)
        rows.append({"preset": name, **count_parameters(cfg), **estimate_flops(cfg)})
    return rows


class PhaseFlopCounter(TorchDispatchMode):
    """FLOPs of the ops run while active, per phase (torch's ``flop_registry`` formulas).

    Phases: ``encoders`` (forward ops with grad disabled: the frozen VAE / text / image encoders
    run under ``no_grad``), ``forward`` (ops with grad enabled), and, once :attr:`phase` is set to
    ``"backward"`` before calling ``backward()``: ``recompute`` (activation checkpointing re-runs
    forward ops with grad enabled) and ``backward`` (the gradient ops, which autograd runs with
    grad disabled). ``model`` FLOPs, as MFU counts them, are ``forward + backward``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.phase = "forward"
        self.flops = {"encoders": 0, "forward": 0, "recompute": 0, "backward": 0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            grad = torch.is_grad_enabled()
            if self.phase == "forward":
                phase = "forward" if grad else "encoders"
            else:
                phase = "recompute" if grad else "backward"
            self.flops[phase] += int(formula(*args, **kwargs, out_val=out))
        return out
