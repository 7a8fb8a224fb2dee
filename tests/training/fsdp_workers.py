"""Process bodies of the sharded-training tests (spawned; one per rank).

Each worker builds the tiny model on the meta device, shards it with ``genprop.scale.sharding``,
loads
its weights slice by slice from a ``save_pretrained`` folder, runs the step the test asks for and
writes its numbers to ``<out>/result_<mode>_<world>_<rank>.json``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from genprop.configs import GenPropConfig
from genprop.losses import training_losses
from genprop.modeling.model import CONFIG_NAME, GenPropModel
from genprop.scale.sharded_weights import (
    build_model_to_shard,
    load_genprop_shards,
    materialize_,
    save_pretrained_from_shards,
    trainable_state_dict,
)
from genprop.scale.sharding import checkpoint_blocks, mixed_precision, shard_model
from genprop.video_batch import VideoBatch
from training.ema import ParameterEMA

FRAMES, SIZE = 4, 32  # the cpu_test preset's clip geometry
CLIP_NORM = 1e-3  # far below the step's gradient norm, so clipping must act
LR = 1e-2


def make_batch(seed: int) -> VideoBatch:
    """A seeded GenProp training batch of one cpu_test clip."""
    g = torch.Generator().manual_seed(seed)
    return VideoBatch(
        target=torch.rand(1, FRAMES, 3, SIZE, SIZE, generator=g) * 2 - 1,
        first=torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1,
        sce=torch.rand(1, FRAMES, 3, SIZE, SIZE, generator=g) * 2 - 1,
        mask=(torch.rand(1, FRAMES, SIZE, SIZE, generator=g) > 0.5).float(),
        task=torch.tensor([1]),
    )


def losses(model: GenPropModel, seed: int) -> dict[str, torch.Tensor]:
    """Stage-2 losses (all region-aware terms, L_grad included) of batch ``seed``."""
    gen = torch.Generator().manual_seed(1000 + seed)
    return training_losses(model, make_batch(seed), stage="genprop", generator=gen)


def set_trainable(model: GenPropModel) -> None:
    """Stage 2 with a frozen backbone."""
    model.requires_grad_(False)
    for p in model.trainable_parameters("genprop"):
        p.requires_grad_(True)


def sharded_model(
    folder: Path, mesh: Any, device: torch.device, *, bf16: bool = False
) -> GenPropModel:
    """Meta build -> shard -> allocate -> load this rank's slices from ``folder``."""
    meta = json.loads((folder / CONFIG_NAME).read_text())
    meta.pop("format")
    meta.pop("version")
    model = build_model_to_shard(GenPropConfig.from_dict(meta))
    set_trainable(model)
    checkpoint_blocks(model)
    policy = mixed_precision(torch.bfloat16 if bf16 else None)
    shard_model(model, mesh, mp_policy=policy, frozen_dtype=torch.bfloat16 if bf16 else None)
    materialize_(model, device)
    missing = load_genprop_shards(model, folder)
    assert not missing, missing
    return model.to(device)


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _trainable(model: GenPropModel) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _train_then_save(model: GenPropModel, out: Path, res: dict[str, Any]) -> None:
    opt = torch.optim.AdamW(_trainable(model), lr=LR)
    ema = ParameterEMA(model, decay=0.9)
    first = losses(model, 0)
    first["total"].backward()
    res["loss"] = first["total"].item()
    res["grad"] = first["grad"].item()
    res["grad_norm"] = _full(torch.nn.utils.clip_grad_norm_(_trainable(model), CLIP_NORM)).item()
    grads = [p.grad for p in _trainable(model)]
    res["clipped_norm"] = _full(torch.nn.utils.get_total_norm(grads)).item()
    opt.step()
    opt.zero_grad()
    before = {n: _local(s).clone() for n, s in ema.shadow.items()}
    decay = ema.current_decay()
    ema.update(model)
    params = dict(model.named_parameters())
    res["ema_moved"] = max(
        (_local(s) - before[n]).abs().max().item() for n, s in ema.shadow.items()
    )
    res["ema_error"] = max(
        (_local(s) - before[n].lerp(_local(params[n]).float(), 1 - decay)).abs().max().item()
        for n, s in ema.shadow.items()
    )
    state = {"model": trainable_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    dcp.save({**state, "ema": ema.shadow}, checkpoint_id=out / "ckpt")
    save_pretrained_from_shards(model, out / "export")
    _next_steps(model, opt, ema, res)


def _resume(model: GenPropModel, out: Path, res: dict[str, Any]) -> None:
    opt = torch.optim.AdamW(_trainable(model), lr=LR)
    ema = ParameterEMA(model, decay=0.9)
    state = {
        "model": trainable_state_dict(model),
        "optim": get_optimizer_state_dict(model, opt),
        "ema": ema.shadow,
    }
    dcp.load(state, checkpoint_id=out / "ckpt")
    set_model_state_dict(model, state["model"], options=StateDictOptions(strict=False))
    set_optimizer_state_dict(model, opt, state["optim"])
    _next_steps(model, opt, ema, res)


def _next_steps(
    model: GenPropModel, opt: torch.optim.Optimizer, ema: ParameterEMA, res: dict[str, Any]
) -> None:
    """The step after the checkpoint (uses the restored optimizer state), then the loss after it."""
    res["ema_checksum"] = sum(_full(s).double().sum().item() for s in ema.shadow.values())
    nxt = losses(model, 1)
    nxt["total"].backward()
    res["next_loss"] = nxt["total"].item()
    opt.step()
    with torch.no_grad():
        res["after_step_loss"] = losses(model, 2)["total"].item()


def _dtypes(model: GenPropModel, res: dict[str, Any]) -> None:
    """Storage dtypes under the default plan, and the bf16-compute loss."""
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    res["frozen_dtypes"] = sorted(str(d) for d in frozen)
    res["trainable_dtypes"] = sorted(str(d) for d in trainable)
    res["bf16_loss"] = losses(model, 0)["total"].item()


def run(rank: int, world: int, port: int, folder: str, out: str, mode: str, device: str) -> None:
    """One rank: ``mode`` is ``"train"`` (step, clip, EMA, save, export, next steps),
    ``"resume"`` (load the checkpoint, next steps) or ``"bf16"`` (default mixed precision)."""
    # torch's FSDP2 warns that module outputs are views (3-D linear outputs); nothing here
    # modifies them in place.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module.*view tensor")
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh(device, (world,))
        dev = torch.device(device, rank) if device == "cuda" else torch.device("cpu")
        model = sharded_model(Path(folder), mesh, dev, bf16=mode == "bf16")
        res: dict[str, Any] = {}
        if mode == "train":
            _train_then_save(model, Path(out), res)
        elif mode == "resume":
            _resume(model, Path(out), res)
        else:
            _dtypes(model, res)
        path = Path(out) / f"result_{mode}_{world}_{rank}.json"
        path.write_text(json.dumps(res))
    finally:
        dist.destroy_process_group()
