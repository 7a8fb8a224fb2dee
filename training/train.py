"""``genprop-train``: compose the Hydra config (``conf/train.yaml``), build everything, fit.

    genprop-train data.shards=DIR experiment=paper trainer.max_steps=N [resume=auto]
    genprop-train -m experiment=no_mpd,no_ra_loss data.shards=DIR            # local sweep
    genprop-train -m cluster=slurm cluster.partition=gpu experiment=paper data.shards=DIR

This file only composes (lightning-hydra-template style): the data module, the LightningModule
(with its partial optimizer/scheduler), callbacks, loggers and the trainer all come from config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from training.resume import find_resume_checkpoint

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
log = logging.getLogger(__name__)


def register_resolvers() -> None:
    """OmegaConf resolvers used by the configs (``${mul:a,b}``)."""
    if not OmegaConf.has_resolver("mul"):
        OmegaConf.register_new_resolver("mul", lambda a, b: a * b)


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
    pl.seed_everything(cfg.seed, workers=False)  # loader workers are seeded by the shard stream
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    run_dir = Path(cfg.paths.run_dir)
    ckpt_path = find_resume_checkpoint(cfg.get("resume"), run_dir / "checkpoints")
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model)
    callbacks = _instantiate_dict(cfg.get("callbacks"))
    loggers = _instantiate_dict(cfg.get("logger"))
    trainer_cfg = cfg.trainer.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.precision = resolve_precision(trainer_cfg)
    trainer: pl.Trainer = instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False, _convert_="partial"
    )
    if ckpt_path is not None:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def _hydra_entry(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("val/total")


def main() -> None:
    """Console entry point ``genprop-train`` (Hydra CLI: overrides, ``-m`` sweeps, ``--cfg``)."""
    register_resolvers()
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")(_hydra_entry)()


if __name__ == "__main__":
    main()
