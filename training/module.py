"""``GenPropLitModule``: the LightningModule for both training stages.

* ``stage="i2v"``: the backbone alone learns first frame -> video on the target clips (stage 1;
  our tiny backbone has no pretrained weights).
* ``stage="genprop"``: SCE, injections, MPD and task embedding learn with the backbone frozen
  (the paper), or also the backbone with ``train_backbone=True``; usually initialised from a
  stage-1 export (``init_from``).

The optimizer and scheduler arrive from Hydra partially built (``_partial_: true``); the module
supplies the trainable parameters. An EMA of the trainable weights (:class:`ParameterEMA`) is
used for validation and export, and saved in every checkpoint together with the RNG states (see
:mod:`training.resume` for everything a resumed run gets back). A step whose loss or gradients
hold NaN or inf makes no update and is counted (:mod:`training.nonfinite`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.distributed.tensor import DTensor

from genprop.losses import CFGDropout, training_losses
from genprop.modeling.latents import EncodedBatch, batch_size
from genprop.modeling.model import GenPropModel
from genprop.region_aware_loss import LossWeights
from genprop.sampling_options import check_sampling_options
from genprop.scale.sharding import is_sharded
from genprop.video_batch import VideoBatch, check_batch_type
from training.config_checks import SetupError
from training.ema import ParameterEMA
from training.fsdp import configure_sharded_model
from training.nonfinite import NonFiniteSteps
from training.preview import generate_preview, log_preview
from training.resume import capture_rng_state, restore_rng_state, step_seed
from training.safe_checkpoint import plain_data
from training.sequence_parallel import data_parallel_rank

STAGES = ("i2v", "genprop")
log = logging.getLogger(__name__)


class GenPropLitModule(pl.LightningModule):
    """Trains a :class:`GenPropModel` with ``genprop.losses.training_losses``.

    Args:
        net: the model to train.
        optimizer: ``params -> Optimizer`` (Hydra ``_partial_``).
        scheduler: ``optimizer -> LRScheduler`` stepped every optimizer step, or ``None``.
        stage: ``"i2v"`` or ``"genprop"``.
        train_backbone: stage ``genprop`` also trains the backbone.
        init_from: a stage-1 ``save_pretrained`` folder whose backbone initialises this model.
        loss_weights: :class:`LossWeights` fields (``mask`` λ, ``grad`` β, ``mpd`` γ,
            ``grad_delta``); a weight of 0 drops the term (and γ=0 freezes the MPD).
        cfg_dropout: :class:`CFGDropout` fields (text / task drop probabilities).
        ema_decay: EMA decay of the trainable weights.
        seed: run seed; step ``s`` on data-parallel rank ``r`` draws its noise from
            ``(seed, s, r)``.
        preview: log a sampled grid video at each validation.
        preview_steps: Euler steps of the preview sample.
        preview_guidance: CFG scale of the preview sample.
        max_consecutive_nonfinite: a step whose loss or gradients hold NaN or inf makes no
            update and is counted (``train/nonfinite_steps``); this many in a row stop the run
            (:class:`training.nonfinite.NonFiniteError`).
    """

    def __init__(
        self,
        *,
        net: GenPropModel,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        stage: str = "genprop",
        train_backbone: bool = False,
        init_from: str | None = None,
        loss_weights: dict[str, float] | None = None,
        cfg_dropout: dict[str, float] | None = None,
        ema_decay: float = 0.999,
        seed: int = 0,
        preview: bool = True,
        preview_steps: int = 8,
        preview_guidance: float = 1.0,
        max_consecutive_nonfinite: int = 10,
    ) -> None:
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"model.stage: expected one of {STAGES}, got {stage!r}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        if init_from is not None:
            if not Path(init_from).is_dir():
                raise FileNotFoundError(f"model.init_from: no export folder at {init_from}")
            net.load_backbone_from(init_from)
        self.stage = stage
        self.weights = LossWeights(**(loss_weights or {}))
        self.cfg_dropout = CFGDropout(**(cfg_dropout or {}))
        self._optimizer_fn = optimizer
        self._scheduler_fn = scheduler
        self.seed = seed
        self.preview = preview
        try:
            check_sampling_options(
                steps=preview_steps, guidance=preview_guidance, injection_weight=1.0
            )
        except ValueError as err:
            raise ValueError(f"model.preview_{err}") from None
        self.preview_steps = preview_steps
        self.preview_guidance = preview_guidance
        self._set_trainable(train_backbone)
        self.ema = ParameterEMA(self.net, decay=ema_decay)
        self.nonfinite = NonFiniteSteps(max_consecutive_nonfinite)
        self._step_finite = True  # of the optimizer step being taken

    def _set_trainable(self, train_backbone: bool) -> None:
        self.net.requires_grad_(False)
        for p in self.net.trainable_parameters(self.stage, train_backbone=train_backbone):
            p.requires_grad_(True)
        if self.stage == "genprop" and not self.weights.mpd:
            # No MPD loss -> no gradient into the MPD; freezing it keeps DDP from waiting on it.
            self.net.mask_decoder.requires_grad_(False)
            if getattr(self.net, "expert_2", None) is not None:
                self.net.expert_2.mask_decoder.requires_grad_(False)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The parameters the optimizer and the EMA see."""
        return [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]

    def configure_model(self) -> None:
        """Shard the model (FSDP2 plan of ``genprop.scale.sharding``) when the strategy provides a
        device mesh (``trainer=fsdp``); a no-op under DDP and single-device training."""
        if self.device_mesh is not None:
            configure_sharded_model(self)

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> Any:
        """Optimizer over the trainable parameters; step-based scheduler."""
        optimizer = self._optimizer_fn(params=[p for _, p in self.trainable_named_parameters()])
        if self._scheduler_fn is None:
            return optimizer
        scheduler = self._scheduler_fn(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def compute_losses(
        self, batch: VideoBatch | EncodedBatch, *, seed: int, step: int
    ) -> dict[str, torch.Tensor]:
        """The loss terms of ``batch`` as a training step computes them (no logging).

        Args:
            batch: pixels or precomputed latents, on the model's device.
            seed: seed of the step's noise, times and guidance dropout.
            step: the optimizer step (two-expert backbones: chooses the expert).

        Returns:
            ``genprop.losses.training_losses``' terms, ``"total"`` to minimise.
        """
        gen = torch.Generator().manual_seed(seed)
        return training_losses(
            self.net,
            batch,
            stage=self.stage,
            weights=self.weights,
            cfg_dropout=self.cfg_dropout,
            generator=gen,
            # Two-expert backbones: every rank trains the same expert at a step (rank-free seed).
            expert_seed=step_seed(self.seed, step, 0),
        )

    def _check_geometry(self, batch: VideoBatch | EncodedBatch) -> None:
        check_batch_type(batch, VideoBatch, EncodedBatch)
        if isinstance(batch, EncodedBatch):  # training_losses checks latents against the model
            return
        cfg = self.net.config
        got = tuple(batch.target.shape[1:2]) + tuple(batch.target.shape[-2:])
        want = (cfg.num_frames, cfg.height, cfg.width)
        if got != want:
            raise SetupError(
                f"data: clips are (frames, height, width) = {got} but the model preset expects "
                f"{want}; use shards of that size, data.num_frames to crop, or another model"
            )

    def training_step(self, batch: VideoBatch | EncodedBatch, batch_idx: int) -> torch.Tensor:
        """One step; noise seeded by ``(seed, global_step, replica)`` so resumes replay exactly
        (the replica: the data-parallel rank, shared by a sequence-parallel group's ranks)."""
        self._check_geometry(batch)
        seed = step_seed(self.seed, self.global_step, data_parallel_rank(self.trainer)[0])
        losses = self.compute_losses(batch, seed=seed, step=self.global_step)
        self.nonfinite.note_loss(losses["total"])
        bs = batch_size(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=bs)
        self.log("optim/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        self._log_data_health(bs)
        return losses["total"]

    def _log_data_health(self, batch_size: int) -> None:
        """``data/corrupt_samples``: unreadable shards and samples skipped so far, all ranks.

        The count comes from the data module (carried with each batch from the loader workers);
        it is summed over ranks on logging steps only (one scalar all-reduce).
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        total = getattr(datamodule, "skipped_total", None)
        if total is None or self.global_step % max(1, self.trainer.log_every_n_steps):
            return
        # A sequence-parallel group's ranks read the same samples: count them once.
        replicas = data_parallel_rank(self.trainer)[1]
        count = torch.tensor(float(total) * replicas / self.trainer.world_size, device=self.device)
        self.log(
            "data/corrupt_samples",
            count,
            batch_size=batch_size,
            on_step=True,
            on_epoch=False,
            sync_dist=True,
            reduce_fx="sum",
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop the step's gradients when its loss or gradients hold NaN or inf (the optimizer
        then leaves every weight as it is, and the EMA is not updated); else log the gradient
        norm before clipping (on logging steps only: it costs a reduction)."""
        params = [p for _, p in self.trainable_named_parameters()]
        grads = [p.grad for p in params if p.grad is not None]
        self._step_finite = self.nonfinite.step_is_finite(grads, self.device)
        if not self._step_finite:
            for p in params:
                p.grad = None  # AdamW (and every torch optimizer) skips a parameter without one
            self.log("train/nonfinite_steps", float(self.nonfinite.total + 1), on_step=True)
            self.nonfinite.skipped(self.global_step)  # raises at the limit
            return
        self.log("train/nonfinite_steps", float(self.nonfinite.total), on_step=True)
        if grads and self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
            if isinstance(norm, DTensor):  # sharded gradients (trainer=fsdp)
                norm = norm.full_tensor()
            self.log("optim/grad_norm", norm, on_step=True, on_epoch=False)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step, then update the EMA: once per optimizer step (accumulation safe), and before the
        checkpoint callbacks' ``on_train_batch_end`` so a checkpoint holds this step's EMA."""
        super().optimizer_step(*args, **kwargs)
        if self._step_finite:
            self.ema.update(self.net)
            self.nonfinite.stepped()

    def on_train_end(self) -> None:
        """Say how many steps were skipped for NaN or inf, if any."""
        if self.nonfinite.total:
            log.warning(
                "%d training step(s) skipped: loss or gradients were NaN or inf",
                self.nonfinite.total,
            )

    # ---------------------------------------------------------------- validation
    def validation_step(self, batch: VideoBatch | EncodedBatch, batch_idx: int) -> None:
        """Losses with the EMA weights (fixed noise per batch index); a preview on batch 0."""
        with self.ema.swapped_in(self.net):
            losses = self.compute_losses(
                batch, seed=step_seed(self.seed, 10**9 + batch_idx, 0), step=10**9 + batch_idx
            )
            # A sharded model's forward is collective: every rank samples, rank 0 logs.
            lead = self.trainer.is_global_zero or is_sharded(self.net)
            pixels = isinstance(batch, VideoBatch)  # a preview needs the pixel clip
            if batch_idx == 0 and self.preview and lead and pixels:
                self._log_preview(batch)
        bs = batch_size(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=bs, sync_dist=True)

    def _log_preview(self, batch: VideoBatch) -> None:
        experiment = getattr(self.logger, "experiment", None)
        can_log = experiment is not None and hasattr(experiment, "add_image")
        if is_sharded(self.net):  # all ranks follow rank 0's logger
            can_log = self.trainer.strategy.broadcast(can_log)
        if not can_log:
            return
        grid = generate_preview(
            self.net,
            batch,
            stage=self.stage,
            steps=self.preview_steps,
            guidance=self.preview_guidance,
            seed=self.seed,
        )
        log_preview(experiment, grid, tag="val/preview", step=self.global_step)

    # ---------------------------------------------------------------- checkpoint state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the EMA weights, the RNG states and the model config (JSON) to the checkpoint;
        hyper-parameters are stored as plain data, so it loads with ``weights_only=True``."""
        if "hyper_parameters" in checkpoint:
            checkpoint["hyper_parameters"] = plain_data(
                checkpoint["hyper_parameters"], "hyper_parameters"
            )
        checkpoint["genprop_config"] = json.dumps(self.net.config.to_dict())
        checkpoint["ema"] = self.ema.state_dict()
        checkpoint["rng"] = capture_rng_state()
        checkpoint["nonfinite"] = self.nonfinite.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check that the checkpoint's weights fit this model, then restore what
        :meth:`on_save_checkpoint` added.

        Raises:
            SetupError: naming the checkpoint and its first tensor that the model lacks or has
                in another shape (a checkpoint of another model size or preset).
        """
        self._check_checkpoint_shapes(checkpoint)
        if "nonfinite" in checkpoint:
            self.nonfinite.load_state_dict(checkpoint["nonfinite"])
        if "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])
        if "rng" in checkpoint:
            restore_rng_state(checkpoint["rng"])

    def _check_checkpoint_shapes(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("state_dict")
        if not isinstance(saved, dict) or is_sharded(self.net):  # sharded: DCP checks it
            return
        own = self.state_dict()
        where = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
        for name, tensor in saved.items():
            mine = own.get(name)
            if mine is None:
                problem = "is not in the model these options build"
            elif isinstance(tensor, torch.Tensor) and tuple(tensor.shape) != tuple(mine.shape):
                problem = (
                    f"is {tuple(tensor.shape)} in the checkpoint but {tuple(mine.shape)} in the "
                    "model these options build"
                )
            else:
                continue
            raise SetupError(
                f"{where}: tensor {name!r} {problem}; resume with the run's own model options "
                "(model.net.preset_name, model.net.overrides, ...)"
            )
        missing = next((n for n in own if n not in saved), None)
        if missing is not None and self.strict_loading:
            raise SetupError(
                f"{where}: tensor {missing!r} of the model is not in the checkpoint; resume with "
                "the run's own model options (model.net.preset_name, model.net.overrides, ...)"
            )
