"""One cached sample as WebDataset tar members, and cached samples -> :class:`EncodedBatch`.

Members of sample ``KEY`` (no pickle anywhere):

* ``KEY.latents.safetensors``: ``target``, ``first_latent``, ``content`` (T', C, h, w), ``mask``
  (T', h, w), ``context`` (n, D) — the prompt embedding up to its last real token (the encoders
  give zeros after it, so zero padding restores it exactly) — ``context_mask`` (L,) bool, and
  ``image_embeds`` (N_img, D_img) / ``gate_keep`` (T', C, h, w) where the model has them; all
  floating tensors in the cache's storage dtype (recorded in the safetensors metadata).
* ``KEY.json``: ``task``, ``prompt``, ``source`` (the pixel shard) and ``source_key``.

``empty_prompt.safetensors`` (one per cache, next to the manifest) holds the empty prompt's
``context`` / ``context_mask`` the same way, for guidance dropout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from contracts.tasks import TASKS
from genprop.modeling.latents import EncodedBatch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LATENTS_MEMBER = "latents.safetensors"
EMPTY_PROMPT = "empty_prompt.safetensors"
MAX_SAMPLE_BYTES = 1 << 31  # a cached sample larger than this is refused before parsing
_OPTIONAL = ("content", "mask", "image_embeds", "gate_keep")
_REQUIRED = ("target", "first_latent", "context", "context_mask")


@dataclass
class LatentSample:
    """A decoded cached sample: its tensors (no batch axis) and its JSON metadata."""

    key: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def trim_context(context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(L, D) embedding -> (n, D): up to the last real token when all rows after it are zero."""
    real = torch.nonzero(mask).flatten()
    n = int(real[-1]) + 1 if real.numel() else 1
    return context[:n] if not bool(context[n:].any()) else context


def pad_context(context: torch.Tensor, length: int) -> torch.Tensor:
    """(n, D) -> (length, D) with zero rows appended."""
    if context.shape[0] == length:
        return context
    pad = context.new_zeros(length - context.shape[0], context.shape[1])
    return torch.cat([context, pad])


def to_storage(tensors: dict[str, torch.Tensor | None], dtype: str) -> dict[str, torch.Tensor]:
    """Per-sample tensors for storage: floats in ``dtype``, contiguous, on the CPU."""
    out = {}
    for name, value in tensors.items():
        if value is None:
            continue
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.to(DTYPES[dtype])
        out[name] = value.contiguous()
    if "context" in out:
        out["context"] = trim_context(out["context"], out["context_mask"]).contiguous()
    return out


def storage_metadata(**fields: str) -> dict[str, str]:
    """safetensors metadata holding ``fields`` under one key: safetensors writes a metadata map
    in an arbitrary order, and the cache must be the same bytes for the same input."""
    return {"genprop-latents": json.dumps(fields, sort_keys=True)}


def read_storage_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """The fields :func:`storage_metadata` stored (empty when absent or malformed)."""
    try:
        fields = json.loads((metadata or {}).get("genprop-latents", "{}"))
    except json.JSONDecodeError:
        return {}
    return fields if isinstance(fields, dict) else {}


def encode_members(
    key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any], dtype: str
) -> dict[str, Any]:
    """A WebDataset sample dict (``__key__`` + members) for one cached sample."""
    return {
        "__key__": key,
        LATENTS_MEMBER: save(tensors, metadata=storage_metadata(dtype=dtype)),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }


def load_tensors(raw: bytes, where: str) -> dict[str, torch.Tensor]:
    """safetensors bytes -> tensors (size bounded, no pickle).

    Raises:
        ValueError: naming ``where`` when the bytes are too large or not safetensors.
    """
    if len(raw) > MAX_SAMPLE_BYTES:
        raise ValueError(f"{where}: {len(raw)} bytes, more than {MAX_SAMPLE_BYTES}")
    try:
        return load(raw)
    except (SafetensorError, ValueError) as err:
        raise ValueError(f"{where}: not a safetensors file ({err})") from None


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Refuse NaN and inf: a cached sample holding them would train the model to NaN.

    Raises:
        ValueError: naming ``where`` and the first non-finite tensor.
    """
    for name, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{where}: tensor {name!r} holds NaN or inf")


def decode_members(d: dict[str, Any]) -> LatentSample:
    """A raw WebDataset sample (``__key__``, members) -> :class:`LatentSample`.

    Raises:
        ValueError: naming the sample and the member or field that is missing or malformed, or
            the tensor that holds NaN or inf.
    """
    where = f"{d.get('__url__', '?')} sample {d.get('__key__', '?')!r}"
    for member in (LATENTS_MEMBER, "json"):
        if not isinstance(d.get(member), bytes):
            raise ValueError(f"{where}: member {member!r} missing")
    tensors = load_tensors(d[LATENTS_MEMBER], f"{where}: {LATENTS_MEMBER}")
    missing = [k for k in _REQUIRED if k not in tensors]
    if missing:
        raise ValueError(f"{where}: {LATENTS_MEMBER} lacks tensors {missing}")
    check_finite(tensors, f"{where}: {LATENTS_MEMBER}")
    try:
        meta = json.loads(d["json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: member 'json' is not JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("task") not in TASKS:
        raise ValueError(f"{where}: json field 'task' must be one of {TASKS}")
    return LatentSample(str(d["__key__"]), tensors, meta)


def collate_latents(
    samples: list[LatentSample], empty: dict[str, torch.Tensor] | None
) -> EncodedBatch:
    """Stack cached samples into an :class:`EncodedBatch` (storage dtype kept).

    Args:
        samples: decoded samples of one cache.
        empty: the cache's ``empty_prompt.safetensors`` tensors, or None.

    Raises:
        ValueError: naming the sample whose tensors differ from the first one's.
    """
    ref = samples[0]

    def stack(name: str) -> torch.Tensor | None:
        if name not in ref.tensors:
            return None
        for s in samples:
            value = s.tensors.get(name)
            if value is None or (value.shape != ref.tensors[name].shape and name != "context"):
                got = None if value is None else tuple(value.shape)
                raise ValueError(
                    f"cached sample {s.key!r}: tensor {name!r} is {got}, sample {ref.key!r} has "
                    f"{tuple(ref.tensors[name].shape)}; one cache holds one geometry"
                )
        if name == "context":
            length = ref.tensors["context_mask"].shape[0]
            return torch.stack([pad_context(s.tensors[name], length) for s in samples])
        return torch.stack([s.tensors[name] for s in samples])

    task_index = {t: i for i, t in enumerate(TASKS)}
    empty_context = empty_mask = None
    if empty is not None:
        empty_mask = empty["context_mask"]
        empty_context = pad_context(empty["context"], empty_mask.shape[0])
    return EncodedBatch(
        target=stack("target"),
        first_latent=stack("first_latent"),
        context=stack("context"),
        context_mask=stack("context_mask"),
        task=torch.tensor([task_index[s.meta["task"]] for s in samples], dtype=torch.long),
        **{name: stack(name) for name in _OPTIONAL},
        empty_context=empty_context,
        empty_context_mask=empty_mask,
    )
