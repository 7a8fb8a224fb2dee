"""``genprop-train``: compose the Hydra config (``conf/training/train.yaml``), build, fit.

    genprop-train data.shards=DIR experiment=paper trainer.max_steps=N [resume=auto]
    genprop-train -m experiment=paper ablation=no_mpd,no_ra_loss data.shards=DIR  # local sweep
    genprop-train -m cluster=slurm cluster.partition=gpu experiment=paper data.shards=DIR

This file only composes (lightning-hydra-template style): the data module, the LightningModule
(with its partial optimizer/scheduler), callbacks, loggers and the trainer all come from config.
Every run also gets :class:`training.signals.RequeueOnSignal` (checkpoint + SLURM requeue on
``SIGUSR2``/``SIGTERM``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from contracts.interrupts import console_signals
from training import launch
from training.cache.key import LatentCacheError
from training.config_checks import SetupError, check_run_config
from training.fsdp import use_meta_build
from training.latent_datamodule import use_latent_cache
from training.nonfinite import NonFiniteError
from training.resume import find_resume_checkpoint
from training.run_folder import RunFolderError, claim_run_folder
from training.safe_checkpoint import UnsafeCheckpointError, check_weights_only
from training.shard_stream import DataPipelineError
from training.signals import RequeueOnSignal

# conf/training/: train.yaml, genprop_cache.yaml and the training groups.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "training"
log = logging.getLogger(__name__)


def register_resolvers() -> None:
    """OmegaConf resolvers used by the configs (see :mod:`training.launch`)."""
    launch.register_resolvers()


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """``trainer.precision`` when set; else bf16-mixed on a GPU and 32-true on CPU."""
    if trainer_cfg.get("precision") is not None:
        return str(trainer_cfg.precision)
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    on_gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu else "32-true"


def _instantiate_dict(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a ``name -> {_target_: ...}`` group (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def train(cfg: DictConfig) -> dict[str, float]:
    """Build data, model, callbacks, loggers and trainer from ``cfg`` and fit.

    Returns:
        The trainer's final logged metrics (floats), e.g. for sweep summaries.
    """
    check_run_config(cfg)  # option ranges, writable folders: before anything is built
    cfg = use_latent_cache(cfg)  # data.latents=DIR: the model is built without its encoders
    pl.seed_everything(cfg.seed, workers=False)  # loader workers are seeded by the shard stream
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    run_dir = Path(cfg.paths.run_dir)
    try:
        ckpt_path = find_resume_checkpoint(cfg.get("resume"), run_dir / "checkpoints")
    except FileNotFoundError as e:  # resume=PATH that is not there
        raise SetupError(str(e)) from None
    if ckpt_path is not None:
        check_weights_only(ckpt_path)
    requeue = RequeueOnSignal(
        checkpoint_dir=run_dir / "checkpoints",
        max_requeues=int(OmegaConf.select(cfg, "cluster.max_requeues", default=20)),
    )
    requeue.install()  # a signal while building is handled after the first batch
    try:
        with claim_run_folder(cfg, run_dir):  # one run at a time, one config per run folder
            trainer = _fit(cfg, requeue, ckpt_path)
    finally:
        requeue.uninstall()  # also when building fails: never leave the handlers installed
    requeue.exit_if_interrupted(trainer)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def _fit(cfg: DictConfig, requeue: RequeueOnSignal, ckpt_path: Path | None) -> pl.Trainer:
    """Build data, model, callbacks, loggers and trainer, and fit (resuming from ``ckpt_path``)."""
    datamodule = instantiate(cfg.data)
    # trainer=fsdp with a Wan folder: built on the meta device, each rank reads its own slices.
    module = instantiate(use_meta_build(cfg).model)
    keep_interrupt = KeepInterrupt()
    callbacks = [*_instantiate_dict(cfg.get("callbacks")), requeue, keep_interrupt]
    loggers = _instantiate_dict(cfg.get("logger"))
    trainer_cfg = cfg.trainer.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.precision = resolve_precision(trainer_cfg)
        # trainer=fsdp's strategy reads it (${trainer.sequence_parallel}); not a Trainer argument.
        trainer_cfg.pop("sequence_parallel", None)
    trainer: pl.Trainer = instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False, _convert_="partial"
    )
    if ckpt_path is not None:
        log.info("resuming from %s", ckpt_path)
    # Checkpoints hold tensors and plain data only (training/safe_checkpoint.py): never unpickle
    # anything else from a run folder.
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if keep_interrupt.interrupt is not None:  # Ctrl-C: exit 130 with one line, not 1
            raise keep_interrupt.interrupt from None
        raise
    return trainer


class KeepInterrupt(pl.Callback):
    """Lightning ends a run stopped by Ctrl-C with ``sys.exit(1)``; this keeps the interrupt so
    ``genprop-train`` exits 130 with its one line (:mod:`contracts.interrupts`), as every
    command does."""

    def __init__(self) -> None:
        self.interrupt: KeyboardInterrupt | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.interrupt = exception


# Errors in what the user gave (data, checkpoint): one line and exit code 1, no traceback.
USER_ERRORS = (
    DataPipelineError,
    UnsafeCheckpointError,
    FileExistsError,
    LatentCacheError,
    NonFiniteError,
)


def _hydra_entry(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except (SetupError, RunFolderError) as e:  # an option, folder, data or checkpoint the run
        # cannot start with, or a run folder of another config / in use by another run
        print(f"genprop-train: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except USER_ERRORS as e:
        print(f"genprop-train: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except InstantiationException as e:
        if not isinstance(e.__cause__, (*USER_ERRORS, SetupError)):
            raise
        print(f"genprop-train: error: {e.__cause__}", file=sys.stderr)
        raise SystemExit(2 if isinstance(e.__cause__, SetupError) else 1) from None
    return metrics.get("val/total")


@console_signals("genprop-train")
def main() -> None:
    """Console entry point ``genprop-train`` (Hydra CLI: overrides, ``-m`` sweeps, ``--cfg``)."""
    register_resolvers()
    if "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]:
        excluded = launch.excluded_run_keys(CONF_DIR / "train.yaml")
        try:
            launch.check_sweep_overrides(sys.argv[1:], excluded)
        except ValueError as err:
            raise SystemExit(f"genprop-train: {err}") from None
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")(_hydra_entry)()


if __name__ == "__main__":
    main()
