"""Weights of a sharded GenProp model: meta-device build, shard-by-shard loading, export.

No rank ever holds the whole model in host memory while training starts:

1. :func:`build_model_to_shard` builds the model's structure on the meta device (no storage); only
   the codec and the text and image encoders, which are not sharded, are built for real.
2. ``genprop.scale.sharding.shard_model`` turns every parameter into a DTensor shard, still on meta.
3. :func:`materialize_` allocates each rank's shards on its device.
4. :func:`load_safetensors_shards` reads, for every parameter, only this rank's slice of it from
   safetensors files (``safe_open(...).get_slice``), from a GenProp ``save_pretrained`` folder
   (:func:`load_genprop_shards`) or straight from a pretrained pipeline folder
   (:func:`load_pipeline_shards`, key map from the backbone family's ``weight_sources``, e.g.
   :mod:`genprop.backbones.wan.weights`). SCE and MPD copies missing from the files read the
   backbone weights they copy (:mod:`genprop.modeling.weight_names`); GenProp's own layers get their
   construction-time initialisation (zero injections).

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

from genprop.backbones.registry import FAMILIES, family_of
from genprop.configs import GenPropConfig
from genprop.modeling.codec import build_codec
from genprop.modeling.model import (
    CONFIG_NAME,
    FORMAT_VERSION,
    NOT_SAVED_PREFIXES,
    WEIGHTS_NAME,
    GenPropModel,
)
from genprop.modeling.text import build_text_encoder
from genprop.modeling.weight_names import EXPERT_2, ZERO_INIT, backbone_copy_sources

INDEX_SUFFIX = ".safetensors.index.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"  # diffusers' weights file stem


def build_model_to_shard(config: GenPropConfig, *, encoders: bool = True) -> GenPropModel:
    """The model with its sharded parts on the meta device (no storage allocated).

    A pretrained backbone (Wan) is built from its folder's ``config.json`` files alone (no weight
    is read; the model's ``config`` gets them filled in by the backbone's family, as
    ``from_config`` fills them).
    With ``encoders`` the codec and the text and image encoders are then built on the CPU, their
    weights loaded from their own folders: they are not sharded (each rank holds a frozen copy),
    and their non-persistent buffers (latent statistics, hashing tables) cannot be restored from
    the meta device. Without, they are the stand-ins of ``GenPropModel(encoders=False)`` (training
    from a latent cache).
    """
    config = _with_folder_architecture(config)
    with torch.device("meta"):
        model = GenPropModel(config, load_weights=False, encoders=False)
    if encoders or config.codec.kind != "wan_vae":  # the parameter-free codec is always built
        model.codec = build_codec(config.codec, load_weights=True)
    if not encoders:
        return model
    model.text_encoder = build_text_encoder(config.text)
    if model.image_encoder is not None:
        from genprop.modeling.image_encoder import CLIPImageEncoder

        path = str(config.backbone.image_encoder_path)
        model.image_encoder = CLIPImageEncoder(path)
        if model.image_encoder.dim != model.backbone.image_dim:
            raise ValueError(
                f"{path}/image_encoder/config.json: hidden_size {model.image_encoder.dim}, "
                f"but the transformer's image_dim is {model.backbone.image_dim}"
            )
    return model


def _with_folder_architecture(config: GenPropConfig) -> GenPropConfig:
    """A copy of ``config`` whose backbone architecture configs (Wan: ``transformer_config`` /
    ``transformer_2_config``) are read from its pretrained folder's ``config.json`` files by its
    family, so the build needs no weights; ``config`` itself without a pretrained folder."""
    family = family_of(config.backbone)
    if family.pretrained_path(config.backbone) is None:
        return config
    config = GenPropConfig.from_dict(config.to_dict())
    family.read_architecture(config.backbone)
    return config


def _rebuild_buffers(module: nn.Module) -> bool:
    """Recompute a module's non-persistent buffers after ``to_empty`` (each backbone family knows
    its own, e.g. Wan's RoPE tables); False if no family does."""
    return any(family.rebuild_buffers(module) for family in FAMILIES.values())


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
    """Which file holds each tensor: ``path`` is a ``.safetensors`` file, a folder of them, a
    ``*.safetensors.index.json`` or a folder with one (sharded diffusers/transformers weights).

    Raises:
        FileNotFoundError: If no safetensors file is found.
    """
    root = Path(path)
    if root.is_file() and root.name.endswith(INDEX_SUFFIX):
        weight_map = json.loads(root.read_text())["weight_map"]
        return {key: root.parent / name for key, name in weight_map.items()}
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
    tensors = {k: v.contiguous() for k, v in state.items() if not k.startswith(NOT_SAVED_PREFIXES)}
    save_file(tensors, str(out / WEIGHTS_NAME))
    return out


@torch.no_grad()
def load_genprop_shards(model: GenPropModel, folder: str | Path) -> list[str]:
    """Initialise a materialised (sharded) model from a ``save_pretrained`` folder, slice by slice.

    A folder without GenProp modules (a stage-1 export: backbone only) initialises the SCE and
    MPD copies from the stored backbone weights they copy (as ``load_backbone_from``); GenProp's
    own layers missing from it get their construction-time initialisation.

    Returns:
        The names that were initialised by default (random) rather than loaded, copied or zeroed.
    """
    index = safetensors_index(Path(folder) / WEIGHTS_NAME)
    copies = backbone_copy_sources(model)

    def rename(name: str) -> str:
        return name if name in index else copies.get(name, name)

    return _init_genprop_layers_(model, load_safetensors_shards(model, index, rename=rename))


def _diffusers_weights(folder: Path) -> dict[str, Path]:
    """:func:`safetensors_index` of a diffusers model folder, preferring diffusers' own
    (non-variant) file names as ``from_pretrained`` does."""
    for name in (f"{DIFFUSERS_WEIGHTS}{INDEX_SUFFIX}", f"{DIFFUSERS_WEIGHTS}.safetensors"):
        if (folder / name).is_file():
            return safetensors_index(folder / name)
    return safetensors_index(folder)


@torch.no_grad()
def load_pipeline_shards(model: GenPropModel, folder: str | Path | None = None) -> list[str]:
    """Initialise a materialised (sharded) model from its backbone's pretrained pipeline folder
    (Wan: the diffusers folder), each rank reading only its slices of the transformer
    sub-folders (``transformer/``, and ``transformer_2/`` for a second expert).

    Key map: the backbone family's ``weight_sources``
    (:func:`genprop.backbones.wan.weights.wan_weight_sources`; the SCE's and MPD's block copies
    read the backbone blocks they copy). GenProp's own layers get their construction-time
    initialisation, so the result equals ``GenPropModel.from_config`` up to its random layers.
    The codec and the encoders are not touched (built from their folders).

    Args:
        model: A materialised GenPropModel with a pretrained backbone (Wan).
        folder: The pipeline folder; ``None``: the backbone's own (``config.backbone.path``).

    Returns:
        The names that were initialised by default (random) rather than loaded or zeroed.

    Raises:
        ValueError: If the backbone's family has no weight-key map, the folder lacks a
            transformer weight, or a backbone parameter has no counterpart in the folder.
    """
    bcfg = model.config.backbone
    family = family_of(bcfg)
    if family.weight_sources is None:
        mapped = [repr(kind) for kind, f in FAMILIES.items() if f.weight_sources is not None]
        raise ValueError(
            f"config.backbone.kind: {bcfg.kind!r}, weights from a pipeline folder need "
            f"{' or '.join(mapped)}"
        )
    sources = family.weight_sources(model)
    root = Path(folder if folder is not None else str(family.pretrained_path(bcfg)))
    unmapped = [
        n
        for n, _ in model.named_parameters()
        if n.startswith(("backbone.", f"{EXPERT_2}backbone.")) and n not in sources
    ]
    if unmapped:
        raise ValueError(f"{root}: no diffusers key for the parameters {unmapped[:5]}")
    indexes = {
        sub: _diffusers_weights(root / sub) for sub in sorted({s for s, _ in sources.values()})
    }
    absent = sorted(f"{sub}/{key}" for sub, key in set(sources.values()) if key not in indexes[sub])
    if absent:
        raise ValueError(
            f"{root}: {len(absent)} transformer weights missing from its safetensors files, "
            f"e.g. {absent[:3]}"
        )
    for sub, index in indexes.items():
        keys = {name: key for name, (s, key) in sources.items() if s == sub}
        load_safetensors_shards(model, index, rename=keys.get)
    missing = [name for name in model.state_dict() if name not in sources]
    return _init_genprop_layers_(model, missing)


# The name from when Wan was the only pretrained family; kept for its callers.
load_wan_shards = load_pipeline_shards


def load_pretrained_shards(model: GenPropModel, folder: str | Path | None = None) -> list[str]:
    """:func:`load_genprop_shards` for a ``save_pretrained`` folder (``model.safetensors``),
    else :func:`load_pipeline_shards` (a pretrained pipeline folder, e.g. Wan's; ``None``: the
    model's own)."""
    if folder is not None and (Path(folder) / WEIGHTS_NAME).is_file():
        return load_genprop_shards(model, folder)
    return load_pipeline_shards(model, folder)


@torch.no_grad()
def _init_genprop_layers_(model: nn.Module, missing: list[str]) -> list[str]:
    """Construction-time initialisation of the parameters in ``missing`` (not found in the
    files): default ``reset_parameters`` of their modules, then GenProp's zero-inits
    (:data:`genprop.modeling.weight_names.ZERO_INIT`). The codec and the encoders, built from their
    own
    folders, are left alone.

    Returns:
        The names initialised by default (random), i.e. not zeroed.
    """
    params = dict(model.named_parameters())
    skip = (*NOT_SAVED_PREFIXES, "codec.")
    names = [n for n in missing if n in params and not n.startswith(skip)]
    owners = {n.rsplit(".", 1)[0] for n in names}
    for name, sub in model.named_modules():
        if name in owners and hasattr(sub, "reset_parameters"):
            _reset_parameters_sharded(sub)
    for name in names:
        if ZERO_INIT.match(name):
            params[name].zero_()
    return [n for n in names if not ZERO_INIT.match(n)]


@torch.no_grad()
def _reset_parameters_sharded(module: nn.Module) -> None:
    """``module.reset_parameters()`` on full-size plain tensors, then each rank keeps its slice.

    Every rank draws the same full tensor from its (identically seeded) generator, so the sharded
    parameter equals the unsharded initialisation, on any device (DTensor's own random ops are
    only consistent across ranks on CUDA).
    """
    sharded = {n: p for n, p in module._parameters.items() if p is not None}
    plain = {n: torch.empty(p.shape, dtype=p.dtype) for n, p in sharded.items()}
    try:
        for name, tensor in plain.items():
            module._parameters[name] = nn.Parameter(tensor, requires_grad=False)
        module.reset_parameters()  # type: ignore[operator]
    finally:
        module._parameters.update(sharded)
    for name, param in sharded.items():
        shape, offset = _local_slice(param)
        local = param.to_local() if isinstance(param, DTensor) else param
        part = plain[name][tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))]
        local.copy_(part)
