"""Weights of a sharded GenProp model: meta-device build, shard-by-shard loading, export.

No rank ever holds the whole model in host memory while training starts:

1. :func:`build_meta_model` builds the model's structure on the meta device (no storage); only
   the codec and the text encoder, which are not sharded, are built for real.
2. ``genprop.sharding.shard_model`` turns every parameter into a DTensor shard, still on meta.
3. :func:`materialize_` allocates each rank's shards on its device.
4. :func:`load_safetensors_shards` reads, for every parameter, only this rank's slice of it from
   safetensors files (``safe_open(...).get_slice``); GenProp's own modules (SCE, MPD) are then
   initialised from the loaded backbone with ``GenPropModel.reset_genprop_modules``.

:func:`save_pretrained_from_shards` is the way back: it gathers the full state on rank 0 (CPU)
and writes the ``save_pretrained`` folder that ``GenPropModel.from_pretrained`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from genprop.codec import build_codec
from genprop.configs import GenPropConfig
from genprop.model import _NOT_SAVED, CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME, GenPropModel
from genprop.text import build_text_encoder

INDEX_SUFFIX = ".safetensors.index.json"


def build_meta_model(config: GenPropConfig) -> GenPropModel:
    """The model with its sharded parts on the meta device (no storage allocated).

    The codec and the text and image encoders are rebuilt on the CPU (their weights loaded from
    their own folders if the config names one): they are not sharded, and their non-persistent
    buffers (latent statistics, hashing tables) cannot be restored from the meta device.
    """
    with torch.device("meta"):
        model = GenPropModel(config, load_weights=False)
    model.codec = build_codec(config.codec, load_weights=True)
    model.text_encoder = build_text_encoder(config.text)
    if getattr(model, "image_encoder", None) is not None:
        model.image_encoder = type(model.image_encoder)(config.backbone.image_encoder_path)
    return model


def _rebuild_buffers(module: nn.Module) -> bool:
    """Recompute a module's non-persistent buffers after ``to_empty``; False if unknown."""
    if type(module).__name__ == "WanRotaryPosEmbed":  # diffusers' Wan RoPE tables
        fresh = type(module)(module.attention_head_dim, module.patch_size, module.max_seq_len)
        for name, buf in fresh.named_buffers(recurse=False):
            getattr(module, name).copy_(buf)
        return True
    return False


@torch.no_grad()
def materialize_(model: nn.Module, device: torch.device | str) -> None:
    """Allocate every meta parameter and buffer (uninitialised) on ``device``, in place.

    Non-persistent buffers are recomputed where the module is known; their values are not part of
    any weights file.

    Raises:
        ValueError: naming a module whose non-persistent buffers cannot be recomputed.
    """
    owners = [
        (name, sub)
        for name, sub in model.named_modules()
        if any(b.is_meta for b in sub.buffers(recurse=False)) and sub._non_persistent_buffers_set
    ]
    for sub in model.modules():  # modules built for real (codec, text encoder) keep their state
        own = [*sub.parameters(recurse=False), *sub.buffers(recurse=False)]
        if any(t.is_meta for t in own):
            sub.to_empty(device=device, recurse=False)
    for name, sub in owners:
        if not _rebuild_buffers(sub):
            raise ValueError(
                f"{name} ({type(sub).__name__}): non-persistent buffers cannot be rebuilt after a "
                "meta-device build; build this module on a real device instead"
            )


def safetensors_index(path: str | Path) -> dict[str, Path]:
    """Which file holds each tensor: ``path`` is a ``.safetensors`` file, a folder of them, or a
    folder with a ``*.safetensors.index.json`` (sharded diffusers/transformers weights).

    Raises:
        FileNotFoundError: If no safetensors file is found.
    """
    root = Path(path)
    if root.is_file():
        files = [root]
    else:
        indexes = sorted(root.glob(f"*{INDEX_SUFFIX}"))
        if indexes:
            weight_map = json.loads(indexes[0].read_text())["weight_map"]
            return {key: root / name for key, name in weight_map.items()}
        files = sorted(root.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{root}: no .safetensors weights found")
    index: dict[str, Path] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            index.update(dict.fromkeys(f.keys(), file))
    return index


def _local_slice(tensor: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(local shape, global offset) of this rank's part of ``tensor`` (whole for plain tensors)."""
    if isinstance(tensor, DTensor):
        shape, offset = compute_local_shape_and_global_offset(
            tensor.shape, tensor.device_mesh, tensor.placements
        )
        return tuple(shape), tuple(offset)
    return tuple(tensor.shape), (0,) * tensor.dim()


@torch.no_grad()
def load_safetensors_shards(
    model: nn.Module,
    index: Mapping[str, Path],
    *,
    rename: Callable[[str], str | None] = lambda name: name,
) -> list[str]:
    """Copy this rank's slice of each parameter and persistent buffer from safetensors files.

    Args:
        model: A (sharded or plain) module, materialised on its device.
        index: Tensor key -> file, from :func:`safetensors_index`.
        rename: Model state-dict name -> key in the files (``None``: not loaded from them).

    Returns:
        The model's state-dict names that were not found in the files (left as they are).

    Raises:
        ValueError: If a stored tensor's shape differs from the parameter's.
    """
    handles: dict[Path, object] = {}
    missing = []
    try:
        for name, tensor in model.state_dict().items():
            key = rename(name)
            if key is None or key not in index:
                missing.append(name)
                continue
            file = index[key]
            if file not in handles:
                handles[file] = safe_open(str(file), framework="pt").__enter__()
            stored = handles[file].get_slice(key)  # type: ignore[attr-defined]
            if tuple(stored.get_shape()) != tuple(tensor.shape):
                raise ValueError(
                    f"{file}: tensor {key!r} has shape {tuple(stored.get_shape())}, the model's "
                    f"{name} expects {tuple(tensor.shape)}"
                )
            shape, offset = _local_slice(tensor)
            part = stored[tuple(slice(o, o + s) for o, s in zip(offset, shape, strict=True))]
            local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
            local.copy_(part.reshape(shape))
    finally:
        for handle in handles.values():
            handle.__exit__(None, None, None)  # type: ignore[attr-defined]
    return missing


def full_state_on_rank0(
    model: nn.Module, *, trainable_only: bool = False
) -> dict[str, torch.Tensor]:
    """The model's full (unsharded) state on CPU on rank 0; ``{}`` on the other ranks.

    Args:
        model: A sharded (or plain) module.
        trainable_only: Keep only parameters with ``requires_grad``.
    """
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    if trainable_only:
        keep = {n for n, p in model.named_parameters() if p.requires_grad}
        state = {k: v for k, v in state.items() if k in keep}
    return state


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """This rank's state of the parameters with ``requires_grad`` (DTensor shards when sharded):
    what a sharded checkpoint stores, without the frozen backbone, codec and text encoder."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in get_model_state_dict(model).items() if k in keep}


def save_pretrained_from_shards(model: GenPropModel, directory: str | Path) -> Path | None:
    """``GenPropModel.save_pretrained`` of a sharded model: gather on rank 0, write there.

    Every rank must call it (the gather is collective). Tensors are written in their stored dtype
    (frozen parts in their storage dtype, trainable parts in fp32).

    Returns:
        The folder on rank 0, ``None`` on the other ranks.
    """
    state = full_state_on_rank0(model)
    if dist.is_initialized() and dist.get_rank() != 0:
        return None
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": "genprop", "version": FORMAT_VERSION, **model.config.to_dict()}
    (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
    tensors = {k: v.contiguous() for k, v in state.items() if not k.startswith(_NOT_SAVED)}
    save_file(tensors, str(out / WEIGHTS_NAME))
    return out


@torch.no_grad()
def load_genprop_shards(model: GenPropModel, folder: str | Path) -> list[str]:
    """Initialise a materialised (sharded) model from a ``save_pretrained`` folder, slice by slice.

    A folder without GenProp modules (a stage-1 export: backbone only) initialises the SCE and
    the MPD from the loaded backbone (``reset_genprop_modules``, as ``load_backbone_from``).
    Parameters still missing after that (e.g. the MPD head of a stage-1 export) get their
    modules' default initialisation.

    Returns:
        The names that were initialised by default rather than loaded.
    """
    missing = load_safetensors_shards(model, safetensors_index(Path(folder) / WEIGHTS_NAME))
    if any(name.startswith("content_encoder.") for name in missing):
        model.reset_genprop_modules()
        copied = ("content_encoder.", "mask_decoder.block.", "task_embedding.")
        missing = [n for n in missing if not n.startswith(copied)]
        missing = [n for n in missing if not n.endswith(("fusion.weight", "fusion.bias"))]
    params = dict(model.named_parameters())
    missing = [n for n in missing if n in params and not n.startswith(_NOT_SAVED)]
    owners = {n.rsplit(".", 1)[0] for n in missing}
    for name, sub in model.named_modules():
        if name in owners and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    return missing
