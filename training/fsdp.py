"""Sharded training (``trainer=fsdp``): FSDP2 through Lightning's ``ModelParallelStrategy``.

Why this strategy: Lightning's ``FSDPStrategy`` wraps FSDP1 (flat parameters), under which
gradient-norm clipping, a per-parameter EMA and frozen/trainable splits do not work. FSDP2
(``torch.distributed.fsdp.fully_shard``) shards each parameter as a DTensor; Lightning's
``ModelParallelStrategy`` runs it, leaving the sharding plan to ``LightningModule.configure_model``
(here :func:`configure_sharded_model`, which applies ``genprop.scale.sharding``). This subclass
adds:

* a data-parallel mesh over all ranks (CPU + gloo works too: the tests use it), or with
  ``trainer.sequence_parallel=N`` a (data x sequence)-parallel one, parameters sharded over all
  ranks (:mod:`training.sequence_parallel`);
* the plan's options (compute dtype, frozen storage dtype, resharding, activation checkpointing);
* sharded checkpoints (a folder written with ``torch.distributed.checkpoint``) that hold only the
  *trainable* weights, the optimizer and the EMA shards; frozen parts come back from where they
  were loaded (the pretrained folder, ``init_from`` or the seeded initialisation). DCP reshards
  on load, so a run resumes at another world size. Everything else Lightning stores (step,
  loops, LR scheduler, callbacks, RNG, EMA counters) goes to ``meta.pt`` in the folder.

A model too big for every rank's host memory is built on the meta device
(:func:`build_meta_net`) and each rank reads only its slices of the weights after sharding: from a
Wan diffusers pipeline folder (``model.net.pretrained``, the default with ``trainer=fsdp``, see
:func:`use_meta_build`) or from a ``save_pretrained`` folder (``trainer.strategy.init_weights``).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed.checkpoint as dcp
from lightning.pytorch.strategies import ModelParallelStrategy
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from genprop.backbones.registry import family_of
from genprop.modeling.model import GenPropModel
from genprop.scale.sequence_parallel import enable_sequence_parallel
from genprop.scale.sharded_weights import (
    build_model_to_shard,
    load_pretrained_shards,
    materialize_,
    save_pretrained_from_shards,
    trainable_state_dict,
)
from genprop.scale.sharding import checkpoint_blocks, is_sharded, mixed_precision, shard_model
from training.ema import ParameterEMA
from training.model_factory import build_config
from training.resume import SHARDED_METADATA
from training.sequence_parallel import (
    check_size,
    mesh_sizes,
    sequence_parallel_group,
    shard_mesh,
)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _dtype(name: str | None, field: str) -> torch.dtype | None:
    if name is None:
        return None
    if name not in DTYPES:
        raise ValueError(f"trainer.strategy.{field}: expected one of {sorted(DTYPES)} or null")
    return DTYPES[name]


class GenPropFSDPStrategy(ModelParallelStrategy):
    """FSDP2 data parallelism with trainable-only sharded checkpoints (see module docstring).

    Args:
        compute_dtype: dtype the units compute in (``"bf16"``; ``None``: the stored dtypes),
            except what the backbone keeps in fp32 (``genprop.scale.sharding``).
        frozen_dtype: storage dtype of frozen parameters (``"bf16"``; ``None``: unchanged),
            except what the backbone keeps in fp32.
        reshard_after_forward: free gathered parameters after each unit's forward (ZeRO-3).
        activation_checkpointing: recompute blocks, SCE steps and the L_grad pass in backward.
        init_weights: the folder that initialises a model built on the meta device
            (``model.net._target_=training.fsdp.build_meta_net``), each rank reading only its
            slices: a ``save_pretrained`` folder or a Wan pipeline folder; ``None``: the model's
            own Wan folder (``model.net.pretrained``). Unused for a model built with real
            weights.
        process_group_backend: ``"nccl"``, ``"gloo"`` or ``None`` (from the device).
        timeout: collective timeout.
        sequence_parallel: ranks per sequence-parallel group (``trainer.sequence_parallel``; 1:
            none; ``auto``: every device of a node), dividing the devices per node and the
            attention heads (:mod:`training.sequence_parallel`).
    """

    def __init__(
        self,
        *,
        compute_dtype: str | None = "bf16",
        frozen_dtype: str | None = "bf16",
        reshard_after_forward: bool = True,
        activation_checkpointing: bool = True,
        init_weights: str | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = timedelta(minutes=30),
        sequence_parallel: int | str = 1,
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=True,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        self.compute_dtype = _dtype(compute_dtype, "compute_dtype")
        self.frozen_dtype = _dtype(frozen_dtype, "frozen_dtype")
        self.reshard_after_forward = reshard_after_forward
        self.activation_checkpointing = activation_checkpointing
        self.init_weights = init_weights
        self.sequence_parallel = check_size(sequence_parallel)

    def setup_environment(self) -> None:
        """Mesh (data parallel, sequence parallel): all ranks data-parallel without it."""
        # (data parallel) x (sequence parallel); without it, every rank is one replica.
        self._data_parallel_size, self._tensor_parallel_size = mesh_sizes(
            self.sequence_parallel, self.num_processes, self.num_nodes
        )
        super().setup_environment()

    # ---------------------------------------------------------------- checkpoints
    def lightning_module_state_dict(self) -> dict[str, Any]:
        """This rank's shards of the trainable parameters only."""
        assert self.model is not None
        return trainable_state_dict(self.model)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None
    ) -> None:
        """Write a sharded checkpoint folder: DCP (weights, optimizer, EMA) + ``meta.pt``."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint: storage_options unsupported")
        path = Path(self.broadcast(str(filepath)))
        partial = path.parent / f".{path.name}.partial"  # renamed into place once complete
        if self.global_rank == 0:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        self.barrier()
        sharded = {"state_dict": checkpoint.pop("state_dict")}
        for i, optim_state in enumerate(checkpoint.pop("optimizer_states", [])):
            sharded[f"optimizer_{i}"] = optim_state
        ema = checkpoint.get("ema")
        if isinstance(ema, dict) and "shadow" in ema:
            sharded["ema"] = ema["shadow"]
            checkpoint["ema"] = {k: v for k, v in ema.items() if k != "shadow"}
        dcp.save(sharded, storage_writer=FileSystemWriter(partial, overwrite=True))
        if self.global_rank == 0:
            torch.save(checkpoint, partial / SHARDED_METADATA)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            partial.rename(path)
        self.barrier()

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict:
        """Load a folder from :meth:`save_checkpoint` into the sharded model, optimizer and EMA
        (any world size); return the rest for Lightning to restore.

        Raises:
            ValueError: If the path is not a sharded checkpoint folder.
        """
        path = Path(self.broadcast(str(checkpoint_path)))
        if not (path / SHARDED_METADATA).is_file():
            raise ValueError(
                f"{path}: not a sharded checkpoint folder (no {SHARDED_METADATA}); trainer=fsdp "
                "resumes only from checkpoints written with trainer=fsdp"
            )
        module = self.lightning_module
        assert self.model is not None and module is not None
        state: dict[str, Any] = {"state_dict": trainable_state_dict(self.model)}
        for i, optimizer in enumerate(self.optimizers):
            state[f"optimizer_{i}"] = get_optimizer_state_dict(self.model, optimizer)
        ema: ParameterEMA | None = getattr(module, "ema", None)
        if ema is not None:
            state["ema"] = ema.shadow
        dcp.load(state, checkpoint_id=path)
        set_model_state_dict(
            self.model, state["state_dict"], options=StateDictOptions(strict=False)
        )
        for i, optimizer in enumerate(self.optimizers):
            set_optimizer_state_dict(self.model, optimizer, state[f"optimizer_{i}"])
        checkpoint = torch.load(
            path / SHARDED_METADATA, map_location="cpu", weights_only=weights_only
        )
        if ema is not None and isinstance(checkpoint.get("ema"), dict):
            checkpoint["ema"] = {**checkpoint["ema"], "shadow": state["ema"]}
        return checkpoint


def configure_sharded_model(module: pl.LightningModule) -> None:
    """Apply ``genprop.scale.sharding`` to ``module.net`` with the strategy's options (idempotent)
    and
    rebuild the EMA over the shards.

    Called from ``configure_model`` when the strategy provides a device mesh.
    """
    net = module.net  # type: ignore[attr-defined]
    if is_sharded(net):
        return
    strategy = module.trainer.strategy
    if not isinstance(strategy, GenPropFSDPStrategy):
        raise TypeError(
            f"trainer.strategy: sharded training needs {GenPropFSDPStrategy.__name__}, "
            f"got {type(strategy).__name__}"
        )
    # Before sharding: a group size that does not divide the heads fails here, in one line.
    enable_sequence_parallel(net, sequence_parallel_group(strategy.device_mesh))
    if strategy.activation_checkpointing:
        checkpoint_blocks(net)
    shard_model(
        net,
        shard_mesh(strategy.device_mesh),  # all ranks: data x sequence parallel
        mp_policy=mixed_precision(strategy.compute_dtype),
        frozen_dtype=strategy.frozen_dtype,
        reshard_after_forward=strategy.reshard_after_forward,
    )
    if any(p.is_meta for p in net.parameters()):
        backbone = net.config.backbone
        if strategy.init_weights is None and not family_of(backbone).pretrained_path(backbone):
            raise ValueError(
                "trainer.strategy.init_weights: the model was built on the meta device without a "
                "Wan folder (model.net.pretrained); name the save_pretrained folder its weights "
                "are loaded from"
            )
        materialize_(net, strategy.root_device)
        load_pretrained_shards(net, strategy.init_weights)
    net.to(strategy.root_device)
    module.ema = ParameterEMA(net, decay=module.ema.decay)  # type: ignore[attr-defined]


def build_meta_net(*, train_experts: str = "both", **net: Any) -> GenPropModel:
    """``model.net`` target for models too big for every rank's host memory: the model of
    :func:`training.model_factory.build_model` (same arguments) on the meta device; its weights
    come, after sharding, from ``trainer.strategy.init_weights`` or else the ``pretrained`` Wan
    folder. The VAE, text and image encoders are built for real (frozen, replicated), or not at
    all with ``latents`` (a ``genprop-cache`` folder, whose key is checked)."""
    cfg = build_config(**net)
    model = build_model_to_shard(cfg, encoders=net.get("latents") is None)
    model.set_train_experts(train_experts)
    return model


FULL_BUILD = "training.model_factory.build_model"
META_BUILD = f"{__name__}.{build_meta_net.__name__}"


def use_meta_build(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``model.net`` built on the meta device (:func:`build_meta_net`) when sharded
    training (``trainer=fsdp``) starts from a pretrained Wan folder (``model.net.pretrained``):
    each rank then reads only its slices of the transformer weights instead of loading them all.

    Unchanged otherwise, and when ``model.init_from`` is set (a stage-1 export re-copied into the
    SCE, which needs the full model) or ``model.net._target_`` is not the default builder.
    """
    strategy = OmegaConf.select(cfg, "trainer.strategy._target_", default=None)
    net = OmegaConf.select(cfg, "model.net", default=None)
    if (
        strategy != f"{__name__}.{GenPropFSDPStrategy.__name__}"
        or net is None
        or net.get("_target_") != FULL_BUILD
        or not net.get("pretrained")
        or OmegaConf.select(cfg, "model.init_from", default=None)
    ):
        return cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model.net._target_ = META_BUILD
    return cfg


def export_pretrained(module: pl.LightningModule, directory: str | Path) -> Path | None:
    """``save_pretrained`` of the module's EMA weights, sharded or not.

    Sharded: collective (call on every rank), written by rank 0. Plain: call on rank 0 only.

    Returns:
        The folder where it was written, ``None`` on ranks that did not write.
    """
    net = module.net  # type: ignore[attr-defined]
    with module.ema.swapped_in(net):  # type: ignore[attr-defined]
        if is_sharded(net):
            return save_pretrained_from_shards(net, directory)
        return net.save_pretrained(directory)
