"""Export any saved checkpoint to a ``save_pretrained`` folder, on demand.

    python -m training.export CHECKPOINT OUT [genprop-train overrides ...]

``CHECKPOINT`` is a ``.ckpt`` file (one device, DDP) or a sharded checkpoint folder
(``trainer=fsdp``), e.g. ``outputs/train/wan_paper/checkpoints/step00012000.ckpt``. ``OUT`` gets
``config.json`` + ``model.safetensors`` holding the checkpoint's EMA weights: the weights the
run's own ``export/last`` would hold at that step (``GenPropModel.from_pretrained``,
``genprop-propagate --model OUT``).

The overrides are the run's own, as for ``resume=auto`` and ``genprop-plan``. Without any, the
ones ``genprop-train`` recorded in the run folder are used (``RUN/.hydra/overrides.yaml``, two
levels above a checkpoint in ``RUN/checkpoints/``). The model is built as the run built it (same
seed; on the meta device from a Wan folder with ``trainer=fsdp``), then

* a checkpoint file holds every weight: it is loaded whole and its EMA swapped in;
* a sharded checkpoint holds only the trainable weights, optimizer and EMA: the frozen weights
  come from where the run loaded them (the Wan folder, ``trainer.strategy.init_weights``,
  ``model.init_from`` or the seeded initialisation), stored in the strategy's ``frozen_dtype``
  as the sharded run's own export stores them, and the EMA is read into whole tensors.

It runs in one process without a GPU or a process group (``torch.distributed.checkpoint``
reshards a checkpoint of any world size on load), so it needs host memory for the whole model:
about ``export_gb`` of ``genprop-plan``, plus the frozen encoders the build loads.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.distributed.checkpoint as dcp
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.distributed.checkpoint import CheckpointException

from genprop.scale.sharded_weights import load_pretrained_shards, materialize_
from genprop.scale.sharding import cast_frozen_
from training.ema import ParameterEMA
from training.fsdp import DTYPES, GenPropFSDPStrategy, export_pretrained, use_meta_build
from training.latent_datamodule import use_latent_cache
from training.nonfinite import NonFiniteError, check_exportable
from training.resume import SHARDED_METADATA
from training.train import CONF_DIR, register_resolvers

PROG = "python -m training.export"
# Recorded overrides that say where or how the run went on, not which model it trained.
_SKIPPED = ("resume=", "hydra.", "+hydra.")


def is_sharded_checkpoint(path: Path) -> bool:
    """A ``trainer=fsdp`` checkpoint folder (else a ``.ckpt`` file).

    Raises:
        FileNotFoundError: If ``path`` is neither.
    """
    if (path / SHARDED_METADATA).is_file():
        return True
    if path.is_file():
        return False
    raise FileNotFoundError(f"{path}: no checkpoint file or sharded checkpoint folder there")


def run_overrides(checkpoint: Path) -> list[str]:
    """The overrides ``genprop-train`` recorded for the run that wrote ``checkpoint``.

    Raises:
        FileNotFoundError: If the run folder has no ``.hydra/overrides.yaml``.
    """
    recorded = checkpoint.resolve().parent.parent / ".hydra" / "overrides.yaml"
    if not recorded.is_file():
        raise FileNotFoundError(
            f"{recorded}: not found; pass the run's genprop-train overrides after OUT"
        )
    overrides = yaml.safe_load(recorded.read_text()) or []
    return [str(o) for o in overrides if not str(o).startswith(_SKIPPED)]


def compose_run_config(overrides: list[str]) -> DictConfig:
    """``genprop-train``'s composed config for ``overrides``."""
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def build_module(cfg: DictConfig, *, sharded: bool) -> pl.LightningModule:
    """The run's LightningModule with its frozen weights as the run holds them (see module
    docstring); its trainable weights are replaced by the checkpoint's."""
    cfg = use_latent_cache(cfg)  # a cache run's model has no encoders, nor has its export
    pl.seed_everything(cfg.seed, workers=False)  # the run's initialisation of unloaded weights
    if not sharded:
        return instantiate(cfg.model)
    strategy = OmegaConf.select(cfg, "trainer.strategy", default=None)
    target = f"{GenPropFSDPStrategy.__module__}.{GenPropFSDPStrategy.__name__}"
    if not isinstance(strategy, DictConfig) or strategy.get("_target_") != target:
        raise ValueError(
            "a sharded checkpoint needs the run's sharded config: add trainer=fsdp (and the "
            "run's other overrides)"
        )
    module = instantiate(use_meta_build(cfg).model)
    net = module.net
    frozen_dtype = strategy.get("frozen_dtype")
    if frozen_dtype is not None:
        if frozen_dtype not in DTYPES:
            raise ValueError(f"trainer.strategy.frozen_dtype: expected one of {sorted(DTYPES)}")
        cast_frozen_(net, DTYPES[frozen_dtype])  # what the sharded run stores and exports
    if any(p.is_meta for p in net.parameters()):
        # Built on the meta device: read the frozen weights whole from where training read
        # each rank's slices (the same calls as training.fsdp.configure_sharded_model).
        materialize_(net, "cpu")
        load_pretrained_shards(net, strategy.get("init_weights"))
        module.ema = ParameterEMA(net, decay=module.ema.decay)
    return module


def load_checkpoint(module: pl.LightningModule, path: Path, *, sharded: bool) -> int:
    """Load the weights of ``path`` into ``module`` and its EMA; return the checkpoint's step.

    Raises:
        ValueError: If the checkpoint does not fit the model (other overrides than the run's), or
            holds more than tensors and plain data.
    """
    try:
        if sharded:
            # In place into the EMA's whole tensors. One process is the intent: silence DCP's
            # warning that no process group is initialised.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
                dcp.load({"ema": module.ema.shadow}, checkpoint_id=path, no_dist=True)
            meta = torch.load(path / SHARDED_METADATA, map_location="cpu", weights_only=True)
            return int(meta["global_step"])
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])
        module.ema.load_state_dict(ckpt["ema"])
        return int(ckpt["global_step"])
    except pickle.UnpicklingError:
        raise ValueError(
            f"{path}: holds more than tensors and plain data (a weights-only load refused it); "
            "export only checkpoints written by genprop-train"
        ) from None
    except (RuntimeError, KeyError, ValueError, CheckpointException) as err:
        if isinstance(err, CheckpointException):  # wraps (error, traceback) of each rank
            err = next(iter(err.failures.values()))[0]
        reason = " ".join(line.strip() for line in str(err).splitlines()) or type(err).__name__
        raise ValueError(
            f"{path}: does not fit the model these overrides build ({reason[:240]}); pass the "
            "run's genprop-train overrides"
        ) from None


def export_checkpoint(cfg: DictConfig, checkpoint: Path, out: Path) -> tuple[Path, int]:
    """Write the EMA weights of ``checkpoint`` as a ``save_pretrained`` folder ``out``.

    Returns:
        ``out`` and the checkpoint's global step.

    Raises:
        NonFiniteError: if a weight to export holds NaN or inf (nothing is written).
    """
    sharded = is_sharded_checkpoint(checkpoint)
    module = build_module(cfg, sharded=sharded)
    step = load_checkpoint(module, checkpoint, sharded=sharded)
    check_exportable(module.net, module.ema.shadow, str(out), collective=False)
    written = export_pretrained(module, out)  # not sharded here: written by this process
    assert written is not None
    return written, step


def main(argv: list[str] | None = None) -> int:
    """``python -m training.export CHECKPOINT OUT [overrides]``; exit 1 on a bad input."""
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    if len(args) < 2 or any("=" in a for a in args[:2]):
        print(f"{PROG}: expected CHECKPOINT OUT [genprop-train overrides]", file=sys.stderr)
        return 2
    checkpoint, out, overrides = Path(args[0]), Path(args[1]), args[2:]
    try:
        is_sharded_checkpoint(checkpoint)
        cfg = compose_run_config(overrides or run_overrides(checkpoint))
        written, step = export_checkpoint(cfg, checkpoint, out)
    except (
        HydraException,
        OmegaConfBaseException,
        FileNotFoundError,
        ValueError,
        NonFiniteError,
    ) as err:
        cause = err.__cause__ if isinstance(err.__cause__, Exception) else err  # hydra wraps
        lines = str(cause).strip().splitlines() or [type(cause).__name__]
        print(f"{PROG}: error: {lines[0]}", file=sys.stderr)
        return 1
    print(f"exported {checkpoint} (step {step}) to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
