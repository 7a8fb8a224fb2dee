"""Peak GPU memory of ``genprop-propagate`` for one chunk, planned on the meta device.

Propagation runs chunk by chunk (the model's ``num_frames`` x height x width), in three phases:
the VAE encodes the chunk (content video and first frame), the backbone denoises it (``steps``
forward passes, twice the batch under classifier-free guidance), the VAE decodes it. The peak per
GPU is the largest of the phases, each the sum of

* **weights resident** in that phase, by ``offload`` (:mod:`genprop.inference.placement`),
  counted from the model's parameters and buffers in the dtype :func:`~genprop.modeling.precision.
  cast_model` gives them (bf16 keeps fp32 what ``fp32_parameter_names`` keeps; buffers keep their
  dtype). Exact for the model's modules; the text encoder, which the meta model stands in, is
  built on the meta device from its ``config.json`` and counted the same way.

  - ``none``: every component (VAE, text encoder, image encoder, backbone + SCE + MPD of every
    expert, the small rest) in every phase.
  - ``model``: the small rest (what no offloaded component holds: task embedding, content gate,
    ...) + the component that runs: the VAE for the codec phases, the largest expert with its SCE
    and MPD for denoising (the text and image encoders run alone, before, and are smaller).
  - ``sequential``: the small rest, which here also holds what lies outside every ``nn.ModuleList``
    (the text encoder's token embedding, the backbone's patch / condition embedders and heads) +
    the largest streamed unit: accelerate loads each module's *own* tensors just before it runs
    and drops them after, so a unit's peak is its deepest chain of nested modules' own tensors.

* **activations**, measured, not modelled: the real ``GenPropModel.forward`` of one denoising
  step (no grad, batch doubled with CFG, MPD head on) runs on the meta device under
  :class:`~genprop.scale.meta_step.LiveBytesMode`, attention through the memory-efficient kernel's
  op (:func:`~genprop.scale.meta_step.emulated_autocast`, no autocast: the weights already have
  the dtype); with sequence parallelism as one rank of a fake process group
  (:func:`~genprop.scale.memory_plan.planned_sequence_parallel`), so only token activations are
  divided. The VAE's encode of the chunk (content + first frame) and decode of its latents are
  measured the same way, whole (every rank runs the VAE on the whole chunk).
* **tensors kept across phases**, counted from their shapes: the forward's inputs (noisy,
  first-frame and content latents, text and image embeddings; fp32, as the sampler keeps them),
  the chunk's pixels at model size (fp32) and its decoded frames.

Modelled, not measured: kernel workspaces, the CUDA context and fragmentation (the
``usable_fraction`` margin, as for training). ``propagate`` holds one chunk on the device at a
time, so device memory is flat in the video's length. ``genprop-propagate`` streams frames in
and out chunk by chunk, so its host memory is flat too; a library caller of the in-memory
``propagate()`` holds the whole input and output: ``host_per_frame_gb`` per frame (two fp32
frames at model size).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genprop.configs import TextConfig
from genprop.inference.placement import OFFLOAD_MODES, check_dtype, check_offload
from genprop.modeling.image_encoder import CLIP_TOKENS
from genprop.modeling.precision import cast_model, fp32_parameter_names
from genprop.scale.memory_plan import GB, backbone_tokens, planned_sequence_parallel
from genprop.scale.meta_model import MetaModel
from genprop.scale.meta_step import LiveBytesMode, emulated_autocast

__all__ = ["OFFLOAD_MODES", "PropagationPlan", "plan_propagation"]


@dataclass
class PropagationPlan:
    """Peak GPU memory of one propagation chunk (GB of 1e9 bytes, per GPU).

    Attributes:
        dtype, offload, sequence_parallel, guidance, batch: What was planned.
        memory_gb: ``weights`` (the most resident at once), ``weights_all`` (every component),
            ``activations_denoise`` (one forward), ``activations_codec`` (VAE encode / decode),
            ``latents`` (forward inputs), ``pixels`` (chunk in and out).
        phases_gb: The peak of each phase (``encode``, ``denoise``, ``decode``).
        gpu_memory_gb: The peak: the largest phase.
        host_per_frame_gb: Host memory per frame of the video (see module docstring).
        capacity_gb, usable_fraction: The card, and the share of it a plan may use.
    """

    dtype: str
    offload: str
    sequence_parallel: int
    guidance: float
    batch: int
    tokens: int
    memory_gb: dict[str, float]
    phases_gb: dict[str, float]
    gpu_memory_gb: float
    host_per_frame_gb: float
    capacity_gb: float
    usable_fraction: float

    @property
    def fits(self) -> bool:
        """Whether the peak fits the usable share of the card."""
        return self.gpu_memory_gb <= self.capacity_gb * self.usable_fraction

    def to_json(self) -> dict[str, Any]:
        """The ``propagation`` object of ``genprop-plan``'s JSON."""
        return {
            "gpu_memory_gb": _sig(self.gpu_memory_gb),
            "dtype": self.dtype,
            "offload": self.offload,
            "sequence_parallel": self.sequence_parallel,
            "fits": self.fits,
            "guidance": self.guidance,
            "cfg": self.guidance != 1.0,
            "tokens": self.tokens,
            "memory_gb": {k: _sig(v) for k, v in self.memory_gb.items()},
            "phases_gb": {k: _sig(v) for k, v in self.phases_gb.items()},
            "host_per_frame_gb": _sig(self.host_per_frame_gb),
        }


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _tensor_bytes(module: nn.Module, keep: set[int], low: torch.dtype, recurse: bool) -> int:
    """Bytes of ``module``'s parameters after ``cast_model(low)`` (ids in ``keep`` stay fp32) and
    of its buffers (never cast)."""
    total = 0
    for p in module.parameters(recurse=recurse):
        dtype = p.dtype
        if p.is_floating_point():
            dtype = torch.float32 if id(p) in keep else low
        total += p.numel() * dtype.itemsize
    total += sum(b.numel() * b.element_size() for b in module.buffers(recurse=recurse))
    return total


def _streamed_peak(module: nn.Module, size: Callable[[nn.Module], int]) -> int:
    """Peak bytes of ``module`` under accelerate's ``cpu_offload``: every submodule's own tensors
    are loaded by its pre-forward hook and dropped after its forward, so what is resident at once
    is one chain of nested modules."""
    children = [_streamed_peak(c, size) for c in module.children()]
    return size(module) + max(children, default=0)


def _repeated(module: nn.Module, skip: Iterable[nn.Module]) -> list[nn.Module]:
    """What ``placement._sequential`` streams: each element of the outermost ``nn.ModuleList`` s
    below ``module``, outside ``skip`` (same walk as ``placement._repeated_layers``)."""
    skip = list(skip)
    skipped = {id(m) for m in skip}
    out: list[nn.Module] = []
    for child in module.children():
        if id(child) in skipped:
            continue
        if isinstance(child, nn.ModuleList):
            out += [m for m in child if any(True for _ in m.parameters())]
        else:
            out += _repeated(child, skip)
    return out


def _meta_text_encoder(meta: MetaModel, text: TextConfig | None) -> nn.Module | None:
    """The configured ``transformers`` text encoder built on meta from its config (the meta model
    holds a hashing stand-in), or None when the model's own text encoder is the real one."""
    if meta.text_encoder_params == 0 or text is None or text.kind != "transformers":
        return None
    import transformers
    from transformers import AutoConfig

    root = Path(str(text.path))
    folder = root / "text_encoder" if (root / "text_encoder").is_dir() else root
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    arch = (config.architectures or [""])[0]
    model_cls = getattr(transformers, arch, None) if arch else None
    with torch.device("meta"):
        model = (
            transformers.AutoModel.from_config(config) if model_cls is None else model_cls(config)
        )
    return model.get_encoder() if hasattr(model, "get_encoder") else model


def _weights(
    meta: MetaModel, low: torch.dtype, offload: str, text_config: TextConfig | None
) -> dict[str, float]:
    """Resident weight bytes: ``codec`` / ``denoise`` phases and ``all``, for ``offload``."""
    model = meta.model
    keep_names = fp32_parameter_names(model) if low != torch.float32 else set()
    keep = {id(p) for n, p in model.named_parameters() if n in keep_names}
    text = _meta_text_encoder(meta, text_config)
    # The meta model's text encoder is a stand-in: count the configured one instead.
    stand_in = model.text_encoder if text is not None else None
    vae = getattr(model.codec, "vae", None)
    vae = vae if vae is not None and any(True for _ in vae.parameters()) else None
    encoders = [m for m in (vae, model.image_encoder, text or model.text_encoder) if m is not None]
    experts = [nn.ModuleList(model.route(torch.empty(0), e)) for e in range(model.num_experts)]

    def size(m: nn.Module, recurse: bool = True) -> int:
        return _tensor_bytes(m, keep, low, recurse)

    own_text = [] if stand_in is None else [stand_in]
    if offload == "sequential":
        streamed = [
            *_repeated(model, [*own_text, *([vae] if vae else [])]),
            *([vae] if vae else []),
        ]
        if text is not None:
            streamed += _repeated(text, [])
    elif offload == "model":
        streamed = [*encoders, *experts]
    else:
        streamed = []
    held = {id(p) for m in [*streamed, *own_text] for p in [*m.parameters(), *m.buffers()]}
    rest = sum(
        (p.numel() * (torch.float32 if id(p) in keep else low).itemsize)
        if p.is_floating_point()
        else p.numel() * p.element_size()
        for p in model.parameters()
        if id(p) not in held
    ) + sum(b.numel() * b.element_size() for b in model.buffers() if id(b) not in held)
    if text is not None:
        counted = {id(t) for m in streamed for t in [*m.parameters(), *m.buffers()]}
        loose = [t for t in [*text.parameters(), *text.buffers()] if id(t) not in counted]
        rest += sum(
            t.numel() * (low.itemsize if t.is_floating_point() else t.element_size()) for t in loose
        )
    everything = size(model) - (size(stand_in) if stand_in is not None else 0)
    everything += size(text) if text is not None else 0
    if offload == "none":
        return {"codec": everything, "denoise": everything, "all": everything}
    if offload == "model":
        vae_bytes = size(vae) if vae is not None else 0
        expert = max(size(e) for e in experts)
        others = max((size(e) for e in encoders), default=0)
        return {"codec": rest + vae_bytes, "denoise": rest + max(expert, others), "all": everything}
    unit = max((_streamed_peak(m, lambda x: size(x, False)) for m in streamed), default=0)
    return {"codec": rest + unit, "denoise": rest + unit, "all": everything}


def _forward_inputs(meta: MetaModel, batch: int, low: torch.dtype) -> dict[str, torch.Tensor]:
    """The denoising forward's inputs for ``batch`` clips (already doubled under CFG), on meta."""
    model = meta.model
    cfg, codec, bb = model.config, model.codec, model.backbone
    f = codec.spatial_factor
    shape = (batch, model.latent_frames, codec.latent_channels, cfg.height // f, cfg.width // f)
    context, mask = model.encode_prompts(None, 1)  # the stand-in gives the shape

    def zeros(*s: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(*s, dtype=dtype, device="meta")

    inputs = {
        "x_t": zeros(*shape),
        "first_latent": zeros(*shape),
        "content": zeros(*shape),
        "context": zeros(batch, *context.shape[1:], dtype=context.dtype),
        "context_mask": zeros(batch, *mask.shape[1:], dtype=mask.dtype),
        "task": zeros(batch, dtype=torch.long),
        "t": zeros(batch),
    }
    if bb.image_dim is not None:
        inputs["image_embeds"] = zeros(batch, CLIP_TOKENS, bb.image_dim)
    return inputs


def _measure(fn: Callable[[], Any], existing: Iterable[torch.Tensor]) -> int:
    """Peak live bytes of the tensors ``fn`` creates (no grad, SDPA as the efficient kernel)."""
    mem = LiveBytesMode(existing)
    with torch.no_grad(), emulated_autocast(None), mem:
        out = fn()
        del out
    return mem.peak


def plan_propagation(
    meta: MetaModel,
    *,
    dtype: str = "bf16",
    offload: str = "none",
    sequence_parallel: int = 1,
    guidance: float = 1.0,
    batch: int = 1,
    gpu_memory_gb: float = 85.0,
    usable_fraction: float = 0.92,
    text: TextConfig | None = None,
) -> PropagationPlan:
    """Plan the peak GPU memory of ``genprop-propagate`` for one chunk of ``meta.model``.

    Args:
        meta: From :func:`genprop.scale.meta_model.build_meta_model` with encoders (its model
            is cast to ``dtype`` in place: free on meta).
        dtype: ``"bf16"`` or ``"fp32"`` (``--dtype``).
        offload: ``"none"``, ``"model"`` or ``"sequential"`` (``--offload``).
        sequence_parallel: Ranks that split the tokens (``--sequence-parallel``).
        guidance: CFG scale; != 1 doubles the forward's batch.
        batch: Videos propagated together (``genprop-propagate`` runs one).
        gpu_memory_gb: Memory of one GPU (GB of 1e9 bytes).
        usable_fraction: Share of the card the plan may use (see ``ClusterSpec``).
        text: The model config's text encoder before :func:`build_meta_model` stood it in (the
            meta model's config holds the stand-in); None counts
            ``meta.text_encoder_params`` in no component (a planning shortcut for tests).

    Raises:
        ValueError: A bad ``dtype``, ``offload``, ``sequence_parallel`` or ``batch``.
    """
    low = check_dtype(dtype)
    check_offload(offload)
    if sequence_parallel < 1 or batch < 1:
        raise ValueError(
            f"sequence_parallel / batch: expected >= 1, got {sequence_parallel} / {batch}"
        )
    model = meta.model
    weights = _weights(meta, low, offload, text)
    cast_model(model, low)
    cfg = model.config
    existing = [*model.parameters(), *model.buffers()]
    forward_batch = batch * (2 if guidance != 1.0 else 1)
    inputs = _forward_inputs(meta, forward_batch, low)
    latents = sum(t.numel() * t.element_size() for t in inputs.values())
    x_t, t = inputs.pop("x_t"), inputs.pop("t")
    with planned_sequence_parallel(model, sequence_parallel):
        denoise = _measure(
            lambda: model(x_t, t, predict_mask=True, expert=0, **inputs),
            [*existing, x_t, t, *inputs.values()],
        )
    pixel = 3 * cfg.height * cfg.width * 4  # one fp32 frame at model size
    chunk = torch.zeros(batch, cfg.num_frames, 3, cfg.height, cfg.width, device="meta")
    lat = torch.zeros(batch, *x_t.shape[1:], device="meta")
    encode = _measure(lambda: model.codec.encode(chunk), [*existing, chunk])
    decode = _measure(lambda: model.codec.decode(lat), [*existing, lat])
    pixels = 2 * batch * cfg.num_frames * pixel  # the chunk in, its decoded frames out
    codec_act = max(encode, decode)
    phases = {
        "encode": weights["codec"] + pixels / 2 + latents / 2 + encode,
        "denoise": weights["denoise"] + pixels / 2 + latents + denoise,
        "decode": weights["codec"] + pixels / 2 + latents / 2 + decode,
    }
    memory = {
        "weights": max(weights["codec"], weights["denoise"]),
        "weights_all": weights["all"],
        "activations_denoise": denoise,
        "activations_codec": codec_act,
        "latents": latents,
        "pixels": pixels,
    }
    return PropagationPlan(
        dtype=dtype,
        offload=offload,
        sequence_parallel=sequence_parallel,
        guidance=float(guidance),
        batch=batch,
        tokens=backbone_tokens(model),
        memory_gb={k: v / GB for k, v in memory.items()},
        phases_gb={k: v / GB for k, v in phases.items()},
        gpu_memory_gb=max(phases.values()) / GB,
        host_per_frame_gb=batch * 2 * pixel / GB,
        capacity_gb=gpu_memory_gb,
        usable_fraction=usable_fraction,
    )
