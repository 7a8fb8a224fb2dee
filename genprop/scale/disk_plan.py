"""Disk a training run needs: one checkpoint, one export, and all that a run keeps at once.

Modelled on what ``genprop-train`` writes (measured on tiny runs, ``tests/training/
test_disk_plan.py``), from the model's parameter counts (``requires_grad`` marks what trains):

* **sharded checkpoint** (``strategy="fsdp"``, a ``torch.distributed.checkpoint`` folder): the
  trainable weights in fp32 (4 B), AdamW's two states (8 B) and the EMA (4 B): 16 B per trainable
  parameter, frozen weights never; plus AdamW's step counter (a 4 B scalar per trainable tensor)
  and records: each rank writes its shard of each tensor as one ``torch.save`` record
  (:data:`DCP_RECORD_BYTES`), the ``.metadata`` file lists every tensor (:data:`DCP_TENSOR_BYTES`),
  ``meta.pt`` holds the loops, callbacks and RNG states (:data:`SHARDED_STATE_BYTES`).
* **checkpoint file** (one device, DDP: ``torch.save``): every weight of the model in its
  parameter dtype (frozen backbone, codec and text / image encoders included), AdamW's states in
  the same dtype, the fp32 EMA, the step counters, and a zip record per tensor
  (:data:`ZIP_RECORD_BYTES`), and the loops, callbacks and RNG states (:data:`FILE_STATE_BYTES`).
* **export** (``model.safetensors``): every weight but the text and image encoders'; sharded runs
  write the frozen ones in their storage dtype (bf16) and the trainable ones in fp32, unsharded
  runs everything in the parameter dtype; plus the safetensors JSON header.

A run keeps ``keep_last`` periodic checkpoints, ``last.ckpt`` and ``best.ckpt``, and the export
folders (``export/last``, and ``export/best`` where each new best is exported); a save writes the
new checkpoint before the oldest is removed, so the peak holds one checkpoint more.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from genprop.modeling.model import NOT_SAVED_PREFIXES

GB = 1e9
# Per-record overheads of the files, measured with torch 2.13 (cpu_test runs, 0.1-0.3 % spread).
DCP_RECORD_BYTES = 1_800  # a torch.save record in __R_0.distcp + its .metadata chunk entry
DCP_TENSOR_BYTES = 100  # a tensor's entry in .metadata
ZIP_RECORD_BYTES = 324  # a tensor in a torch.save zip: headers, 64 B alignment, pickle entry
# The small objects: loops, callbacks, hyperparameters, model config, CPU RNG states (10 KB);
# in a sharded folder as meta.pt (20 KB) plus a record per optimizer param-group field.
FILE_STATE_BYTES = 11_000
SHARDED_STATE_BYTES = 45_000
FP32, STEP_BYTES = 4, 4


@dataclass(frozen=True)
class DiskSpec:
    """What a run keeps (``conf/training/callbacks``) and how it stores weights.

    Attributes:
        keep_last: Periodic checkpoints kept; ``None`` keeps all (no bound on disk).
        last: A ``last.ckpt`` is kept besides them.
        best: Best-by-validation checkpoints kept (``best.ckpt``).
        exports: Export folders kept (``export/last``, ``export/best``).
        param_bytes: Bytes of a weight in the parameter dtype (4; 2 for ``bf16-true``).
        frozen_bytes: Bytes of a frozen weight in a sharded run (2: ``frozen_dtype=bf16``).
    """

    keep_last: int | None = 2
    last: bool = True
    best: int = 1
    exports: int = 1
    param_bytes: int = FP32
    frozen_bytes: int = 2


@dataclass(frozen=True)
class DiskPlan:
    """Sizes in GB (1e9 bytes); ``total_gb`` / ``peak_gb`` are ``None`` without ``keep_last``."""

    checkpoint_gb: float
    export_gb: float
    checkpoints_kept: int | None
    exports_kept: int
    total_gb: float | None
    peak_gb: float | None

    def to_json(self) -> dict[str, Any]:
        """The fields, rounded to 4 significant digits."""
        return {
            "checkpoint_gb": _sig(self.checkpoint_gb),
            "export_gb": _sig(self.export_gb),
            "checkpoints_kept": self.checkpoints_kept,
            "exports_kept": self.exports_kept,
            "disk_gb": None if self.total_gb is None else _sig(self.total_gb),
            "disk_peak_gb": None if self.peak_gb is None else _sig(self.peak_gb),
        }


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def sharded_checkpoint_bytes(trainable: int, tensors: int, world_size: int) -> int:
    """One ``trainer=fsdp`` checkpoint folder: ``trainable`` parameters in ``tensors`` tensors
    (weights, two AdamW states, EMA: each sharded over ``world_size``; one step counter each)."""
    data = trainable * (FP32 + 2 * FP32 + FP32) + tensors * STEP_BYTES
    records = 4 * tensors * world_size + tensors  # step counters are written once
    metadata = 5 * tensors * DCP_TENSOR_BYTES
    return data + records * DCP_RECORD_BYTES + metadata + SHARDED_STATE_BYTES


def file_checkpoint_bytes(
    *, state_bytes: int, state_tensors: int, trainable: int, tensors: int, param_bytes: int
) -> int:
    """One ``.ckpt`` file: the whole state (``state_bytes`` in ``state_tensors`` tensors), AdamW's
    states in the parameter dtype and the fp32 EMA of ``trainable`` parameters in ``tensors``."""
    data = state_bytes + trainable * (2 * param_bytes + FP32) + tensors * STEP_BYTES
    records = state_tensors + 4 * tensors
    return data + records * ZIP_RECORD_BYTES + FILE_STATE_BYTES


def safetensors_bytes(tensors: dict[str, tuple[tuple[int, ...], int]]) -> int:
    """A ``safetensors`` file of ``name -> (shape, bytes per element)``: data + JSON header."""
    header, offset = {}, 0
    for name, (shape, size) in sorted(tensors.items()):
        n = size * math.prod(shape)
        dtype = {2: "BF16", 4: "F32"}.get(size, "F64")
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":"))
    return 8 + -(-len(text) // 8) * 8 + offset  # length prefix, header padded to 8 bytes


def plan_disk(
    model: nn.Module,
    *,
    sharded: bool,
    world_size: int,
    encoder_params: int,
    spec: DiskSpec,
) -> DiskPlan:
    """The disk plan of training ``model`` (meta device is fine: only shapes are read).

    Args:
        model: The GenProp model; ``requires_grad`` marks the trainable parameters.
        sharded: FSDP (folder checkpoints, frozen weights in ``spec.frozen_bytes``).
        world_size: Ranks writing a sharded checkpoint.
        encoder_params: Parameters of the text and image encoders as the run builds them (the
            meta model holds shape-only stand-ins): in a checkpoint file, not in an export.
        spec: What is kept and the dtypes.
    """
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    n_trainable = sum(p.numel() for p in trainable.values())
    params = dict(model.named_parameters())
    saved: dict[str, tuple[tuple[int, ...], int]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name.startswith(NOT_SAVED_PREFIXES):
            continue
        frozen = name in params and name not in trainable
        size = spec.frozen_bytes if sharded and frozen else spec.param_bytes
        saved[name] = (tuple(tensor.shape), FP32 if sharded and name in trainable else size)
    if sharded:
        checkpoint = sharded_checkpoint_bytes(n_trainable, len(trainable), world_size)
    else:
        state = sum(math.prod(shape) * spec.param_bytes for shape, _ in saved.values())
        checkpoint = file_checkpoint_bytes(
            state_bytes=state + encoder_params * spec.param_bytes,
            state_tensors=len(saved),
            trainable=n_trainable,
            tensors=len(trainable),
            param_bytes=spec.param_bytes,
        )
    export = safetensors_bytes(saved)
    kept = None if spec.keep_last is None else spec.keep_last + int(spec.last) + spec.best
    total = None if kept is None else kept * checkpoint + spec.exports * export
    return DiskPlan(
        checkpoint_gb=checkpoint / GB,
        export_gb=export / GB,
        checkpoints_kept=kept,
        exports_kept=spec.exports,
        total_gb=None if total is None else total / GB,
        peak_gb=None if total is None else (total + checkpoint) / GB,
    )
