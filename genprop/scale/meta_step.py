"""One GenProp training step run on the ``meta`` device, measured: FLOPs and peak memory.

Nothing is allocated and no weight is read: every tensor is a shape. The step is the real one,
:func:`genprop.losses.training_losses` then ``backward()``, so whatever the model does (its
blocks, the SCE, the MPD, L_grad's second SCE pass, activation checkpointing) is what gets counted.
Three pieces make a meta step stand for a GPU step:

* :func:`emulated_autocast` emulates CUDA's bf16 autocast on any device: the
  ``torch.nn.functional`` ops autocast runs in bf16 (linear, convolutions, attention) get bf16
  inputs, those it runs in fp32 (norms, softmax, losses) fp32 inputs, above autograd as autocast
  does, so saved tensors have the dtypes, and frozen fp32 weights the bf16 copies, of a
  ``bf16-mixed`` run. It also routes ``scaled_dot_product_attention`` to the memory-efficient
  kernel's op (on meta SDPA would take the math path, which materialises the (N x N) attention
  matrix no GPU kernel stores). Explicit ``.float()`` / ``.to()`` in model code act as on a GPU.
* :class:`LiveBytesMode` (a ``TorchDispatchMode``) adds up the bytes of every storage an op
  creates and subtracts them when the storage is freed (weak references): the live and peak bytes
  of activations, temporaries and gradients, as a caching allocator would see them requested.
* :class:`genprop.scale.flops.PhaseFlopCounter` counts FLOPs with torch's own formulas per phase.

Not seen on meta: kernel workspaces (cuDNN, cuBLAS) and allocator fragmentation; the planner
keeps a margin for them (``ClusterSpec.usable_fraction``). A two-expert backbone runs its first
expert (routing needs timestep values; both experts have the same shapes).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from genprop.losses import training_losses
from genprop.modeling.image_encoder import CLIP_TOKENS
from genprop.modeling.latents import EncodedBatch
from genprop.modeling.model import GenPropModel
from genprop.region_aware_loss import LossWeights
from genprop.scale.flops import PhaseFlopCounter
from genprop.video_batch import VideoBatch

# torch.nn.functional ops CUDA autocast runs in bf16, and those it runs in float32.
_LOW_PRECISION_OPS = (
    *("linear", "conv1d", "conv2d", "conv3d"),
    *("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"),
)
_FP32_OPS = (
    *("layer_norm", "group_norm", "rms_norm", "softmax", "log_softmax"),
    *("mse_loss", "binary_cross_entropy_with_logits"),
)


def efficient_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    fallback: Callable[..., torch.Tensor] = F.scaled_dot_product_attention,
) -> torch.Tensor:
    """``scaled_dot_product_attention`` through the memory-efficient kernel's op.

    Args:
        query, key, value: (B, H, L, E) / (B, H, S, E) as for SDPA (other ranks fall back to SDPA).
        attn_mask: Boolean (True = attend) or additive mask broadcastable to (B, H, L, S).
        fallback: The SDPA to call for other ranks or grouped-query attention.
    """
    if query.dim() != 4 or enable_gqa:
        return fallback(
            query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
        )
    bias = None
    if attn_mask is not None:
        shape = (query.shape[0], query.shape[1], query.shape[2], key.shape[2])
        if attn_mask.dtype == torch.bool:
            zeros = torch.zeros((), dtype=query.dtype, device=query.device)
            bias = zeros.masked_fill(~attn_mask, float("-inf")).expand(shape)
        else:
            bias = attn_mask.to(query.dtype).expand(shape)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, grad, dropout_p, is_causal, scale=scale
    )
    return out[0]


class _CastCache:
    """Autocast's weight-cast cache: leaf tensors that require grad are cast once per region."""

    def __init__(self) -> None:
        self.casts: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    def cast(self, value: Any, dtype: torch.dtype) -> Any:
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            return value
        if value.dtype in (dtype, torch.float64):
            return value
        if not (value.is_leaf and value.requires_grad):
            return value.to(dtype)
        key = (id(value), dtype)
        if key not in self.casts:
            self.casts[key] = value.to(dtype)
        return self.casts[key]


def _casting(fn: Callable[..., Any], dtype: torch.dtype, cache: _CastCache) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = tree_map(functools.partial(cache.cast, dtype=dtype), (args, kwargs))
        return fn(*args, **kwargs)

    return wrapper


@contextmanager
def emulated_autocast(low: torch.dtype | None) -> Iterator[_CastCache]:
    """Emulate CUDA autocast to ``low`` (None: no autocast) on any device, and route SDPA to the
    memory-efficient kernel's op (see the module docstring).

    The ``torch.nn.functional`` entries are replaced for the duration (and restored): unlike a
    ``TorchFunctionMode``, module attributes are also in effect when activation checkpointing
    recomputes a block during backward. Yields the weight-cast cache (``.casts.clear()`` ends the
    autocast region, as autocast does after the forward).
    """
    cache = _CastCache()
    originals = {n: getattr(F, n) for n in (*_LOW_PRECISION_OPS, *_FP32_OPS)}
    sdpa = F.scaled_dot_product_attention
    attention = functools.partial(efficient_attention, fallback=sdpa)
    patched = {"scaled_dot_product_attention": attention}
    if low is not None:
        patched.update({n: _casting(originals[n], low, cache) for n in _LOW_PRECISION_OPS})
        patched.update({n: _casting(originals[n], torch.float32, cache) for n in _FP32_OPS})
        patched["scaled_dot_product_attention"] = _casting(attention, low, cache)
    try:
        for name, fn in patched.items():
            setattr(F, name, fn)
        yield cache
    finally:
        for name, fn in {**originals, "scaled_dot_product_attention": sdpa}.items():
            setattr(F, name, fn)


class LiveBytesMode(TorchDispatchMode):
    """Live and peak bytes of the storages that ops create while the mode is active.

    Storages that exist before (parameters, buffers, inputs: pass them as ``existing``) and views
    of them are not counted. A storage counts once, however many views share it.
    """

    def __init__(self, existing: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._existing = [t.untyped_storage() for t in existing]  # keeps their ids unique
        self._existing_ids = {id(s) for s in self._existing}
        self._refs: dict[int, weakref.ref] = {}
        self.live = 0
        self.peak = 0

    def _release(self, key: int, nbytes: int, _ref: weakref.ref) -> None:
        if self._refs.pop(key, None) is not None:
            self.live -= nbytes

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._refs or key in self._existing_ids:
            return
        nbytes = storage.nbytes()
        self._refs[key] = weakref.ref(storage, functools.partial(self._release, key, nbytes))
        self.live += nbytes
        self.peak = max(self.peak, self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf)
        return out


@dataclass
class StepMeasurement:
    """What one measured training step did (per process, for its batch).

    Attributes:
        flops: FLOPs per phase: ``encoders`` (no-grad forward: VAE, text, image encoders),
            ``forward`` (with grad), ``backward`` (incl. checkpoint recomputation).
        peak_bytes: Peak live bytes of the tensors the step created (activations, temporaries,
            encoder outputs; the gradients of trainable weights are freed as they arrive).
        saved_bytes: Live bytes when the forward pass ended (what autograd keeps for backward).
    """

    flops: dict[str, int]
    peak_bytes: int
    saved_bytes: int


@contextmanager
def _checkpointing(model: GenPropModel, enabled: bool) -> Iterator[None]:
    backbones = [m for m in model.modules() if hasattr(m, "gradient_checkpointing")]
    before = [m.gradient_checkpointing for m in backbones]
    for m in backbones:
        m.gradient_checkpointing = enabled
    try:
        yield
    finally:
        for m, b in zip(backbones, before, strict=True):
            m.gradient_checkpointing = b


def meta_latent_batch(
    model: GenPropModel, batch_size: int, device: torch.device | str = "meta"
) -> EncodedBatch:
    """A training batch of the model's clip geometry as a latent cache gives it (``data.latents``):
    latents, latent-grid mask, prompt (and image) embeddings, in the cache's bf16."""
    cfg, codec, bb = model.config, model.codec, model.backbone
    b, f = batch_size, codec.spatial_factor
    latents = (b, model.latent_frames, codec.latent_channels, cfg.height // f, cfg.width // f)
    tokens, dim = cfg.text.max_tokens, model.text_encoder.dim

    def zeros(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.zeros(*shape, dtype=dtype, device=device)

    image = None
    if bb.image_dim is not None:
        image = zeros(b, CLIP_TOKENS, bb.image_dim)
    return EncodedBatch(
        target=zeros(*latents),
        first_latent=zeros(*latents),
        context=zeros(b, tokens, dim),
        context_mask=zeros(b, tokens, dtype=torch.bool),
        task=zeros(b, dtype=torch.long),
        content=zeros(*latents),
        mask=zeros(*latents[:2], *latents[3:]),
        image_embeds=image,
        empty_context=zeros(tokens, dim),
        empty_context_mask=zeros(tokens, dtype=torch.bool),
    )


def meta_batch(
    model: GenPropModel, batch_size: int, device: torch.device | str = "meta"
) -> VideoBatch:
    """A training batch of the model's clip geometry (float32 pixels, as the data loader gives)."""
    cfg = model.config
    b, t, h, w = batch_size, cfg.num_frames, cfg.height, cfg.width
    return VideoBatch(
        target=torch.zeros(b, t, 3, h, w, device=device),
        first=torch.zeros(b, 3, h, w, device=device),
        sce=torch.zeros(b, t, 3, h, w, device=device),
        mask=torch.zeros(b, t, h, w, device=device),
        task=torch.zeros(b, dtype=torch.long, device=device),
    )


def measure_step(
    model: GenPropModel,
    batch: VideoBatch | EncodedBatch,
    *,
    stage: str,
    weights: LossWeights,
    low_precision: torch.dtype | None,
    checkpointing: bool,
) -> StepMeasurement:
    """Run ``training_losses`` + ``backward()`` under the measuring modes.

    Args:
        model: A model (on ``meta`` for planning); ``requires_grad`` already marks what trains.
        batch: From :func:`meta_batch` (pixels) or :func:`meta_latent_batch` (a latent cache).
        stage: ``"i2v"`` or ``"genprop"``.
        weights: Loss weights (β > 0 adds L_grad's second SCE pass).
        low_precision: ``torch.bfloat16`` to emulate bf16 autocast, None for none.
        checkpointing: Activation checkpointing of the model's blocks during this step.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    hooks = [p.register_post_accumulate_grad_hook(_drop_grad) for p in trainable]
    existing = [*model.parameters(), *model.buffers(), *batch.tensors().values()]
    flops = PhaseFlopCounter()
    mem = LiveBytesMode(existing)
    try:
        with (
            _checkpointing(model, checkpointing),
            emulated_autocast(low_precision) as casts,
            mem,
            flops,
        ):
            losses = training_losses(
                model, batch, stage=stage, weights=weights, generator=torch.Generator()
            )
            total = losses["total"]
            del losses
            casts.casts.clear()  # autocast's region ends with the forward pass
            saved = mem.live
            flops.phase = "backward"
            total.backward()
            del total
    finally:
        for h in hooks:
            h.remove()
    return StepMeasurement(flops=dict(flops.flops), peak_bytes=mem.peak, saved_bytes=saved)


def _drop_grad(param: torch.Tensor) -> None:
    """Free a gradient as soon as it is accumulated (gradients are planned analytically)."""
    param.grad = None
