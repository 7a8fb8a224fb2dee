"""Memory and compute plan of a GenProp training step on a GPU cluster, before it runs.

Per GPU, the peak is the sum of

* **static** parts, analytic from the parameter counts and the strategy (``W`` = world size;
  FSDP shards each over ``W``, DDP / one device keeps full copies):

  ================  ==========================================  ===============================
  part              FSDP2 (``strategy="fsdp"``)                 DDP / one device
  ================  ==========================================  ===============================
  frozen weights    bf16, sharded: 2 B / W                      param dtype: 4 B (2 B bf16-true)
  trainable master  fp32, sharded: 4 B / W                      4 B (2 B bf16-true)
  gradients         fp32, sharded: 4 B / W                      4 B, + 4 B DDP buckets (W > 1)
  AdamW states      2 x fp32, sharded: 8 B / W                  8 B (4 B bf16-true)
  EMA               fp32, sharded: 4 B / W                      4 B
  gathered units    bf16 weights of the largest unit x 2        -
                    (current + prefetched) + its bf16 grads
  encoders          VAE + text + image encoders, bf16, whole    param dtype, whole
  inputs            the batch's pixel clips (float32)           same
  ================  ==========================================  ===============================

* **activations**: measured, not modelled. :func:`genprop.scale.meta_step.measure_step` runs the
real
  training step on the meta device (bf16 autocast emulated, memory-efficient attention) and
  records the peak of live tensor bytes, with and without activation checkpointing; L_grad
  (β > 0) runs its second SCE pass inside that step.

Gradients of the previous step are still allocated during the forward pass (Lightning zeroes them
after ``training_step``), hence the full gradient term. ``fits`` compares the peak with
``usable_fraction`` of the card: the CUDA context, NCCL buffers and allocator fragmentation take
the rest. FLOPs come from the same measured step (:class:`genprop.scale.flops.PhaseFlopCounter`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from genprop.region_aware_loss import LossWeights
from genprop.scale.disk_plan import DiskPlan
from genprop.scale.meta_model import MetaModel
from genprop.scale.meta_step import StepMeasurement, measure_step, meta_batch, meta_latent_batch
from genprop.scale.sequence_parallel import (
    NO_SEQUENCE_PARALLEL,
    SequenceParallel,
    enable_sequence_parallel,
)

GB = 1e9
STRATEGIES = ("single", "ddp", "fsdp")


@dataclass(frozen=True)
class ClusterSpec:
    """Where and how the step runs.

    Attributes:
        strategy: ``"single"`` (one device), ``"ddp"`` or ``"fsdp"`` (FSDP2, one unit per block).
        world_size: Processes (GPUs) in all: devices per node x nodes.
        gpu_memory_gb: Memory of one GPU (GB, 1e9 bytes; an H100-80GB really has 79.2 GiB = 85).
        precision: Lightning precision: ``bf16-mixed``, ``bf16-true``, ``32-true``, ...
        usable_fraction: Share of the card a step may plan to use.
        sequence_parallel: Ranks that share one sample's tokens (Ulysses,
            ``trainer.sequence_parallel``): each runs the step on ``1/sequence_parallel`` of the
            tokens (:mod:`genprop.scale.sequence_parallel`).
    """

    strategy: Literal["single", "ddp", "fsdp"] = "single"
    world_size: int = 1
    gpu_memory_gb: float = 85.0
    precision: str = "bf16-mixed"
    usable_fraction: float = 0.92
    sequence_parallel: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {STRATEGIES}, got {self.strategy!r}")
        if self.world_size < 1:
            raise ValueError(f"world_size: expected >= 1, got {self.world_size}")
        sp = self.sequence_parallel
        if sp < 1 or self.world_size % sp or (sp > 1 and self.strategy != "fsdp"):
            raise ValueError(
                f"trainer.sequence_parallel: expected a divisor of the {self.world_size} GPUs "
                f"with trainer=fsdp, got {sp}"
            )
        if self.gpu_memory_gb <= 0:
            raise ValueError(f"gpu_memory_gb: expected > 0, got {self.gpu_memory_gb}")

    @property
    def low_precision(self) -> torch.dtype | None:
        """The compute dtype of autocast / sharded compute, None for full precision."""
        if self.precision.startswith("bf16"):
            return torch.bfloat16
        if self.precision.startswith("16"):
            return torch.float16
        return None


@dataclass(frozen=True)
class StepSpec:
    """What one step trains: stage, per-GPU batch, loss weights, checkpointing, accumulation."""

    stage: str = "genprop"
    batch_size: int = 1
    weights: LossWeights = field(default_factory=LossWeights)
    checkpointing: bool = False
    accumulate_grad_batches: int = 1
    # With checkpointing, also measure the step without it (one more meta run; for the table).
    compare_without_checkpointing: bool = True


@dataclass
class TrainingPlan:
    """The plan of one training step (all memory in GB per GPU).

    ``to_json`` gives the flat record ``genprop-plan`` prints last.
    """

    backbone_params: int
    trainable_params: int
    frozen_params: int
    encoder_params: int
    largest_unit_params: int
    tokens: int
    memory_gb: dict[str, float]  # static parts, activations (peak) and activations_saved
    gpu_memory_gb: float
    fits: bool
    pflop_per_step: float
    pflop_per_gpu_step: float
    flops: dict[str, int]
    cluster: ClusterSpec
    step: StepSpec
    disk: DiskPlan | None = None  # checkpoint / export sizes (genprop.scale.disk_plan)
    sce_blocks: int = 0  # backbone blocks copied into each SCE
    # When it does not fit: the smallest change (a genprop-train override) that makes it fit, or
    # None when none of those tried does (filled in by genprop-plan).
    fits_with: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict: counts, memory breakdown, FLOPs, disk and the assumptions."""
        step = asdict(self.step)
        return {
            "backbone_params": self.backbone_params,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "encoder_params": self.encoder_params,
            "tokens": self.tokens,
            "gpu_memory_gb": _sig(self.gpu_memory_gb),
            "gpu_capacity_gb": self.cluster.gpu_memory_gb,
            "fits": self.fits,
            "fits_with": self.fits_with,
            "pflop_per_step": _sig(self.pflop_per_step),
            "pflop_per_gpu_step": _sig(self.pflop_per_gpu_step),
            "memory_gb": {k: _sig(v) for k, v in self.memory_gb.items()},
            "flops": self.flops,
            "strategy": self.cluster.strategy,
            "world_size": self.cluster.world_size,
            "sequence_parallel": self.cluster.sequence_parallel,
            "precision": self.cluster.precision,
            "usable_fraction": self.cluster.usable_fraction,
            "batch_size_per_gpu": step["batch_size"],
            "accumulate_grad_batches": step["accumulate_grad_batches"],
            "checkpointing": step["checkpointing"],
            "l_grad": bool(self.step.weights.grad),
            "stage": step["stage"],
            **(self.disk.to_json() if self.disk is not None else {}),
        }


def _sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (readable JSON, no false precision)."""
    return float(f"{value:.{digits}g}")


def _count(params: list[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def _largest_unit(model: nn.Module) -> int:
    """Parameters of the largest FSDP unit: a transformer block (SCE units also hold one
    injection MLP, counted in)."""
    blocks = [b for m in model.modules() for n, b in m.named_children() if n == "blocks"]
    sizes = [_count(list(b.parameters())) for lst in blocks for b in lst]
    injections = [
        _count(list(i.parameters()))
        for m in model.modules()
        for n, lst in m.named_children()
        if n == "injections"
        for i in lst
    ]
    return max(sizes, default=0) + max(injections, default=0)


def _encoder_modules(model: nn.Module) -> list[nn.Module]:
    names = ("codec", "text_encoder", "image_encoder")
    return [m for n in names if (m := getattr(model, n, None)) is not None]


def static_memory(
    *, frozen: int, trainable: int, encoders: int, unit: int, cluster: ClusterSpec
) -> dict[str, float]:
    """Bytes of everything but activations (see the module docstring's table), in GB."""
    fsdp = cluster.strategy == "fsdp"
    shard = cluster.world_size if fsdp else 1
    half = cluster.precision.endswith("-true") and cluster.low_precision is not None
    param_bytes = 2 if half else 4
    parts = {
        "weights_frozen": frozen * (2 if fsdp else param_bytes) / shard,
        "weights_trainable": trainable * param_bytes / shard,
        "gradients": trainable * param_bytes / shard,
        "optimizer": trainable * 2 * param_bytes / shard,
        "ema": trainable * 4 / shard,
        "ddp_buckets": trainable * param_bytes
        if cluster.strategy == "ddp" and cluster.world_size > 1
        else 0.0,
        "fsdp_gathered_units": 3 * 2 * unit if fsdp else 0.0,
        "encoders": encoders * (2 if fsdp else param_bytes),
    }
    return {k: v / GB for k, v in parts.items()}


def _ensure_compute_dtype(model: nn.Module, cluster: ClusterSpec) -> None:
    """FSDP2 (and ``*-true`` precisions) compute with low-precision weights: cast the meta model
    (free on meta) so the measured step sees the weights a GPU step sees."""
    low = cluster.low_precision
    if low is not None and (cluster.strategy == "fsdp" or cluster.precision.endswith("-true")):
        model.to(low)


def plan_training(
    meta: MetaModel, *, cluster: ClusterSpec, step: StepSpec, latents: bool = False
) -> TrainingPlan:
    """Plan one training step of ``meta.model`` (``requires_grad`` marks what trains).

    Runs the step on the meta device with ``step.checkpointing`` and, to compare, without it
    (``step.compare_without_checkpointing``). With ``latents`` the step reads a latent cache
    (``data.latents``): the batch holds latents and embeddings, and the model has no encoders
    (:func:`genprop.scale.meta_model.build_meta_model` with ``encoders=False``).
    """
    model = meta.model
    backbone = (
        model.backbone_parameters()
        if hasattr(model, "backbone_parameters")
        else list(model.backbone.parameters())
    )
    encoder_ids = {id(p) for m in _encoder_modules(model) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad and id(p) not in encoder_ids]
    codec_params = _count(list(model.codec.parameters()))  # 0 for a latent-cache model
    encoders = codec_params + meta.text_encoder_params + meta.image_encoder_params
    unit = _largest_unit(model)
    _ensure_compute_dtype(model, cluster)
    batch = (meta_latent_batch if latents else meta_batch)(model, step.batch_size)

    def run(checkpointing: bool) -> StepMeasurement:
        with planned_sequence_parallel(model, cluster.sequence_parallel):
            return measure_step(
                model,
                batch,
                stage=step.stage,
                weights=step.weights,
                low_precision=cluster.low_precision,
                checkpointing=checkpointing,
            )

    ckpt = run(True) if step.checkpointing else None
    plain = run(False) if ckpt is None or step.compare_without_checkpointing else None
    memory = static_memory(
        frozen=_count(frozen),
        trainable=_count(trainable),
        encoders=encoders,
        unit=unit,
        cluster=cluster,
    )
    memory["inputs"] = sum(t.numel() * t.element_size() for t in batch.tensors().values()) / GB
    if plain is not None:
        memory["activations_no_checkpointing"] = plain.peak_bytes / GB
        memory["activations_saved_no_checkpointing"] = plain.saved_bytes / GB
    if ckpt is not None:
        memory["activations_checkpointing"] = ckpt.peak_bytes / GB
        memory["activations_saved_checkpointing"] = ckpt.saved_bytes / GB
    used = ckpt or plain
    assert used is not None
    active = used.peak_bytes / GB
    static = sum(v for k, v in memory.items() if not k.startswith("activations"))
    # The optimizer step runs after the activations are freed: AdamW's foreach temporaries.
    shard = cluster.world_size if cluster.strategy == "fsdp" else 1
    optimizer_step = static + 4 * _count(trainable) / shard / GB
    peak = max(static + active, optimizer_step)
    model_flops = used.flops["forward"] + used.flops["backward"]
    per_gpu = model_flops * step.accumulate_grad_batches
    flops = {"model": model_flops, **{f"{k}": v for k, v in used.flops.items()}}
    return TrainingPlan(
        backbone_params=_count(backbone),
        trainable_params=_count(trainable),
        frozen_params=_count(frozen),
        encoder_params=encoders,
        largest_unit_params=unit,
        tokens=backbone_tokens(model),
        memory_gb=memory,
        gpu_memory_gb=peak,
        fits=peak <= cluster.gpu_memory_gb * cluster.usable_fraction,
        pflop_per_step=per_gpu * cluster.world_size / 1e15,
        pflop_per_gpu_step=per_gpu / 1e15,
        flops=flops,
        cluster=cluster,
        step=step,
        sce_blocks=int(model.config.sce_blocks),
    )


@contextmanager
def planned_sequence_parallel(model: nn.Module, size: int) -> Iterator[None]:
    """Run the measured step as one rank of a sequence-parallel group of ``size`` ranks.

    The step really runs sequence-parallel (this rank's token shard through every block, the
    all-to-alls around attention, the heads on the gathered sequence), over torch's ``fake``
    process-group backend, whose collectives move no data (torchtitan estimates memory the same
    way): on the meta device the shapes, and so the bytes and FLOPs, are those of a real rank.
    """
    if size == 1:
        yield
        return
    if dist.is_initialized():
        raise RuntimeError("planning sequence parallelism needs a process without a process group")
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=size)
    try:
        enable_sequence_parallel(model, SequenceParallel.from_group(dist.group.WORLD))
        yield
    finally:
        enable_sequence_parallel(model, NO_SEQUENCE_PARALLEL)
        dist.destroy_process_group()


def backbone_tokens(model: nn.Module) -> int:
    """Backbone tokens of one clip at the model's configured size."""
    cfg, codec, bb = model.config, model.codec, model.backbone
    pt, ph, pw = bb.patch_size
    frames = codec.latent_frames(cfg.num_frames) // pt
    f = codec.spatial_factor
    return frames * (cfg.height // (f * ph)) * (cfg.width // (f * pw))
