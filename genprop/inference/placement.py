"""Where a GenProp model's weights live while it propagates: their dtype and their offloading.

* :func:`cast_model`: bf16 weights, except the parameters the pretrained Wan transformer keeps in
  fp32 (:func:`genprop.modeling.precision.fp32_parameter_names`: time embedder, modulation tables,
  affine norms, and the SCE / MPD copies of them), as diffusers loads a Wan transformer in bf16.
  Buffers (RoPE tables, the VAE's latent statistics) are not cast, as under FSDP's bf16 policy.
* :func:`offload_model`, with accelerate's hooks:

  - ``"model"``: each top-level component (VAE, text encoder, image encoder, the backbone with its
    SCE and MPD, and for Wan2.2-A14B each expert) is on the device only while it runs:
    ``cpu_offload_with_hook`` chained in the order the components run, as diffusers'
    ``enable_model_cpu_offload`` chains a pipeline's models; the chain is closed into a cycle
    (the codec offloads the last expert) because propagation runs it once per chunk. The
    experts are not called through a forward of their own (``GenPropModel.forward`` routes each
    step to one), so a forward pre-hook of the model runs the routed expert's accelerate hook.
  - ``"sequential"``: accelerate's ``cpu_offload`` on every repeated layer (each element of an
    ``nn.ModuleList``: transformer blocks and their SCE / MPD copies, the encoders' layers) and
    on the VAE: weights are streamed to the device layer by layer. The small rest (embeddings,
    output heads) stays on the device, because the model reads the device of its first
    parameters to place its inputs.

On a CPU-only machine the execution device is the CPU: the hooks run and the outputs are unchanged,
but memory is only saved when the execution device is a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genprop.modeling.model import GenPropModel
from genprop.modeling.precision import cast_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
OFFLOAD_MODES = ("none", "model", "sequential")


def check_dtype(dtype: str, name: str = "dtype") -> torch.dtype:
    """``"bf16"`` / ``"fp32"`` -> the torch dtype.

    Raises:
        ValueError: one line naming ``name`` and the valid values.
    """
    if dtype not in DTYPES:
        raise ValueError(f"{name}: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def check_offload(offload: str, name: str = "offload") -> str:
    """Return ``offload`` or raise a one-line ValueError naming ``name`` and the valid modes."""
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"{name}: expected one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
    return offload


@dataclass
class Offload:
    """The offloading installed on a model (see :func:`offload_model`).

    Attributes:
        mode: ``"none"``, ``"model"`` or ``"sequential"``.
        device: The execution device (where the inputs go).
        hooks: ``"model"``: accelerate's ``UserCpuOffloadHook`` of each component, in run order.
        handles: torch hook handles of the expert routing (``"model"``).
    """

    mode: str
    device: torch.device
    hooks: list[Any] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)

    def release(self) -> None:
        """Move every ``"model"``-offloaded component back to the CPU (e.g. after a run)."""
        for hook in self.hooks:
            hook.offload()


def offload_model(model: GenPropModel, mode: str, device: str | torch.device) -> Offload:
    """Install ``mode``'s offloading on ``model`` (in place; once per model).

    Args:
        model: A model on the CPU (``"model"`` / ``"sequential"``), or anywhere (``"none"``:
            it is moved to ``device``).
        mode: One of :data:`OFFLOAD_MODES`.
        device: The execution device.

    Raises:
        ValueError: If ``mode`` is unknown or the model is already offloaded.
    """
    check_offload(mode)
    device = torch.device(device)
    installed = getattr(model, "_genprop_offload", None)
    if installed is not None and installed.mode == mode and installed.device == device:
        return installed  # a second propagation with the same model
    if installed is not None:
        raise ValueError(
            f"offload: the model is already offloaded ({installed.mode!r} to {installed.device}); "
            "load it again to change it"
        )
    if mode == "none":
        model.to(device)
        return Offload(mode, device)
    model.to("cpu")
    offload = _model_offload(model, device) if mode == "model" else _sequential(model, device)
    model._genprop_offload = offload
    return offload


def place_model(
    model: GenPropModel,
    *,
    dtype: str | None = None,
    offload: str = "none",
    device: str | torch.device | None = None,
) -> torch.device:
    """Cast and offload ``model`` as :func:`genprop.inference.propagate.propagate` asks.

    Args:
        model: The model (changed in place).
        dtype: ``"bf16"`` or ``"fp32"`` (:func:`cast_model`), or None to keep its weights.
        offload: One of :data:`OFFLOAD_MODES` (:func:`offload_model`).
        device: The execution device; None: the model's own device with ``offload="none"``,
            else CUDA when available, else the CPU.

    Returns:
        The execution device (where the inputs go).

    Raises:
        ValueError: One line naming ``dtype``, ``offload`` or ``device``.
    """
    torch_dtype = None if dtype is None else check_dtype(dtype)
    check_offload(offload)
    if device is None and offload == "none" and getattr(model, "_genprop_offload", None) is None:
        device = model.device
    elif device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device: {err}") from None
    if torch_dtype is not None:
        cast_model(model, torch_dtype)
    if offload == "none" and device == model.device and not hasattr(model, "_genprop_offload"):
        return device  # today's behaviour: nothing moves
    return offload_model(model, offload, device).device


def _components(model: GenPropModel) -> list[nn.Module]:
    """The encoders that run through a forward call (or diffusers' ``apply_forward_hook``), in
    the order propagation runs them: VAE (``codec.vae``), image encoder, text encoder."""
    found = [getattr(model.codec, "vae", None), model.image_encoder, model.text_encoder]
    return [m for m in found if m is not None and any(True for _ in m.parameters())]


def _experts(model: GenPropModel) -> list[nn.ModuleList]:
    """Each expert's backbone, SCE and MPD as one (unregistered) module to offload together."""
    groups = []
    for expert in range(model.num_experts):
        groups.append(nn.ModuleList(model.route(torch.empty(0), expert)))
    return groups


def _model_offload(model: GenPropModel, device: torch.device) -> Offload:
    from accelerate import cpu_offload_with_hook
    from accelerate.utils import send_to_device

    components, experts = _components(model), _experts(model)
    _place_rest(model, [*components, *experts], device)
    hooks: list[Any] = []
    for module in [*components, *experts]:
        prev = hooks[-1] if hooks else None
        hooks.append(cpu_offload_with_hook(module, device, prev_module_hook=prev)[1])
    # Close the chain: the next chunk's first encode offloads the expert that ran last.
    hooks[0].hook.prev_module_hook = hooks[-1]
    expert_hooks = hooks[len(components) :]

    def route(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hook = expert_hooks[kwargs.get("expert") or 0]
        hook.hook.pre_forward(hook.model)  # offloads the previous component, loads this expert
        # Inputs every step: text and image embeddings were placed next to the offloaded model.
        return send_to_device(args, device), send_to_device(kwargs, device)

    handle = model.register_forward_pre_hook(route, with_kwargs=True)
    return Offload("model", device, hooks, [handle])


def _sequential(model: GenPropModel, device: torch.device) -> Offload:
    from accelerate import cpu_offload

    vae = getattr(model.codec, "vae", None)
    whole = [vae] if vae is not None else []  # its encode / decode stream its own layers
    layers = [*_repeated_layers(model, skip=whole), *whole]
    _place_rest(model, layers, device)
    for layer in layers:
        cpu_offload(layer, device)
    return Offload("sequential", device)


def _repeated_layers(module: nn.Module, skip: list[nn.Module]) -> Iterator[nn.Module]:
    """Every element with parameters of every ``nn.ModuleList`` below ``module`` (outermost
    lists only), outside the modules of ``skip``."""
    for child in module.children():
        if any(child is m for m in skip):
            continue
        if isinstance(child, nn.ModuleList):
            yield from (m for m in child if any(True for _ in m.parameters()))
        else:
            yield from _repeated_layers(child, skip)


def _place_rest(module: nn.Module, offloaded: list[nn.Module], device: torch.device) -> None:
    """Move to ``device`` what the offloaded modules do not hold (small resident parts)."""
    skip = {id(m) for group in offloaded for m in group.modules()}
    for sub in module.modules():
        if id(sub) in skip:
            continue
        for param in sub.parameters(recurse=False):
            param.data = param.data.to(device)
        for name, buf in sub.named_buffers(recurse=False):
            if buf is not None:
                sub._buffers[name] = buf.to(device)
