"""``genprop-plan``: memory and FLOPs of a training config on its cluster, before submitting it.

    genprop-plan experiment=wan_paper model.net.pretrained=FOLDER trainer=fsdp trainer.devices=8

Takes the overrides of ``genprop-train`` and composes the same config (``conf/training/train.yaml``,
through :data:`training.train.CONF_DIR` and its resolvers). ``model.net`` is turned into its
``GenPropConfig`` (``training.model_factory.build_config``, as training builds it), the model is
built on the meta device (:func:`genprop.scale.meta_model.build_meta_model`: no memory, no weight
file
read, so a folder with only the pipeline's ``*.json`` files is enough) and wrapped in the
LightningModule of ``model`` (which decides what trains), then one training step runs on the meta
device (:func:`genprop.scale.memory_plan.plan_training`). Prints a table, then one JSON object as
the last
line of stdout.

Read from the config: ``trainer.strategy`` (DDP or a sharded strategy), ``trainer.devices`` x
``trainer.num_nodes`` (world size), ``trainer.precision`` (or the sharded strategy's
``compute_dtype``), ``trainer.accumulate_grad_batches``, ``data.batch_size`` (per GPU),
``model.loss_weights`` (β > 0: L_grad), ``model.net.gradient_checkpointing`` (or the strategy's
``activation_checkpointing``), and ``cluster.gpu_memory_gb`` — the memory one GPU really has, in
GB of 1e9 bytes, default :data:`DEFAULT_GPU_MEMORY_GB` (an "80 GB" H100 reports 79.2 GiB = 85.0
GB to ``torch.cuda.get_device_properties``; settable with any cluster profile, e.g. an A100-40GB:
``cluster.gpu_memory_gb=42.3``). With activation
checkpointing the step is also measured without it, for comparison; ``+plan.compare_without_
checkpointing=false`` skips that second meta run (half the time on a full-size model).

When the run does not fit, it is planned again with each of a few changes, smallest first (more
sequence parallelism, more nodes, half the SCE blocks, L_grad off), and the first that fits is
printed and given as ``fits_with`` in the JSON (``+plan.suggest=false`` skips the search).

Disk (:mod:`genprop.scale.disk_plan`): the size of one checkpoint as the run writes it (a sharded
folder or a ``.ckpt`` file), of one export (``model.safetensors``), and what the run keeps at once
from ``callbacks.*``: ``periodic_checkpoint.keep_last`` + ``last.ckpt`` + ``best.ckpt``
checkpoints and ``export/last`` (+ ``export/best`` where each new best is exported).

Propagation (:mod:`genprop.scale.propagation_plan`): the peak GPU memory of ``genprop-propagate``
running the trained export (the same model config, with its VAE, text and image encoders) on one
chunk, always planned and printed as the ``propagation`` rows and JSON object. Its options are
under ``+propagate.*`` (``+``: the node is not part of the training config): ``dtype`` (bf16 |
fp32, default bf16), ``offload`` (none | model | sequential, default none), ``sequence_parallel``
(default 1) and ``guidance`` (default: the model's largest per-task guidance; != 1 is CFG, the
forward batch doubled), e.g. ``+propagate.offload=model +propagate.sequence_parallel=8``.
"""

from __future__ import annotations

import json
import sys

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from contracts.interrupts import console_signals
from genprop.region_aware_loss import LossWeights
from genprop.scale.disk_plan import DiskSpec, plan_disk
from genprop.scale.memory_plan import ClusterSpec, StepSpec, TrainingPlan, plan_training
from genprop.scale.meta_model import build_meta_model
from genprop.scale.propagation_plan import PropagationPlan, plan_propagation
from training.callbacks import check_keep_last
from training.config_checks import check_options
from training.sequence_parallel import resolve_size
from training.train import CONF_DIR, register_resolvers, resolve_precision

# What an H100-80GB really has: torch reports 79.2 GiB (85.0e9 bytes), not 80e9 bytes.
DEFAULT_GPU_MEMORY_GB = 85.0
_SHARDED = ("fsdp", "modelparallel", "shard")


def _world_size(cfg: DictConfig) -> int:
    """``trainer.devices`` (an int, a list of ids, or ``auto``) x ``trainer.num_nodes``."""
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, str) and devices.lower() == "auto":
        on_cpu = str(cfg.trainer.get("accelerator", "auto")) == "cpu"
        devices = 1 if on_cpu else max(1, torch.cuda.device_count())
    elif not isinstance(devices, int):
        devices = len(devices) if hasattr(devices, "__len__") else int(devices)
    return int(devices) * int(cfg.trainer.get("num_nodes", 1) or 1)


def _nodes(cfg: DictConfig) -> int:
    return int(cfg.trainer.get("num_nodes", 1) or 1)


def _strategy(cfg: DictConfig, world_size: int) -> tuple[str, DictConfig | None]:
    """(``single`` | ``ddp`` | ``fsdp``, the strategy node when it is a config)."""
    node = cfg.trainer.get("strategy", "auto")
    name = str(node.get("_target_", "")) if isinstance(node, DictConfig) else str(node)
    if any(s in name.lower() for s in _SHARDED):
        return "fsdp", node if isinstance(node, DictConfig) else None
    if world_size > 1:
        return "ddp", None
    return "single", None


def _precision(cfg: DictConfig, strategy_node: DictConfig | None) -> str:
    """The compute precision: a sharded strategy's ``compute_dtype``, else ``trainer.precision``
    (unset: bf16-mixed for a GPU accelerator, as training resolves it on a GPU machine)."""
    if strategy_node is not None and strategy_node.get("compute_dtype"):
        return f"{strategy_node.compute_dtype}-mixed"
    if cfg.trainer.get("precision") is not None:
        return str(cfg.trainer.precision)
    if str(cfg.trainer.get("accelerator", "auto")) in ("gpu", "cuda"):
        return "bf16-mixed"
    return resolve_precision(cfg.trainer)


def plan_from_config(cfg: DictConfig) -> TrainingPlan:
    """Plan the training step of a composed ``genprop-train`` config.

    Raises:
        FileNotFoundError / ValueError: a bad model folder or config field (the message names it).
    """
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    assert isinstance(net, dict)
    net["_target_"] = "training.model_factory.build_config"
    train_experts = str(net.pop("train_experts", "both"))
    # data.latents: the run trains from a latent cache, without the VAE, text and image encoders.
    # The planner reads no cache, so the folder need not exist yet.
    latents = OmegaConf.select(cfg, "data.latents") is not None
    net.pop("latents", None)
    meta = build_meta_model(instantiate(net), encoders=not latents)
    meta.model.set_train_experts(train_experts)
    instantiate(cfg.model, net=meta.model, init_from=None)  # marks what trains, as in training
    world = _world_size(cfg)
    strategy, node = _strategy(cfg, world)
    checkpointing = bool(cfg.model.net.get("gradient_checkpointing", False))
    if node is not None:
        checkpointing = checkpointing or bool(node.get("activation_checkpointing", False))
    gpu_gb = OmegaConf.select(cfg, "cluster.gpu_memory_gb", default=DEFAULT_GPU_MEMORY_GB)
    cluster = ClusterSpec(
        strategy=strategy,  # type: ignore[arg-type]
        world_size=world,
        gpu_memory_gb=float(gpu_gb),
        precision=_precision(cfg, node),
        sequence_parallel=resolve_size(
            cfg.trainer.get("sequence_parallel", 1) or 1, world // _nodes(cfg)
        ),
    )
    weights = OmegaConf.to_container(cfg.model.get("loss_weights") or {}, resolve=True)
    step = StepSpec(
        stage=str(cfg.model.get("stage", "genprop")),
        batch_size=int(cfg.data.batch_size),
        weights=LossWeights(**weights),  # type: ignore[arg-type]
        checkpointing=checkpointing,
        accumulate_grad_batches=int(cfg.trainer.get("accumulate_grad_batches", 1) or 1),
        compare_without_checkpointing=bool(
            OmegaConf.select(cfg, "plan.compare_without_checkpointing", default=True)
        ),
    )
    plan = plan_training(meta, cluster=cluster, step=step, latents=latents)
    plan.disk = plan_disk(
        meta.model,
        sharded=strategy == "fsdp",
        world_size=world,
        encoder_params=meta.text_encoder_params + meta.image_encoder_params,
        spec=disk_spec(cfg, cluster, node),
    )
    return plan


def propagation_from_config(cfg: DictConfig) -> PropagationPlan:
    """Plan ``genprop-propagate`` of the model ``cfg`` trains, with ``+propagate.*`` options."""
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    assert isinstance(net, dict)
    net["_target_"] = "training.model_factory.build_config"
    for key in ("train_experts", "latents"):  # training-only keys of model.net
        net.pop(key, None)
    config = instantiate(net)
    sampling = config.sampling
    guidance = max([sampling.guidance, *sampling.task_guidance.values()])
    opts = OmegaConf.select(cfg, "propagate", default=None) or {}
    gpu_gb = OmegaConf.select(cfg, "cluster.gpu_memory_gb", default=DEFAULT_GPU_MEMORY_GB)
    return plan_propagation(
        build_meta_model(config),  # with the encoders: propagation runs them
        dtype=str(opts.get("dtype", "bf16")),
        offload=str(opts.get("offload", "none")),
        sequence_parallel=int(opts.get("sequence_parallel", 1)),
        guidance=float(opts.get("guidance", guidance)),
        gpu_memory_gb=float(gpu_gb),
        text=config.text,
    )


def propagation_rows(plan: PropagationPlan) -> list[tuple[str, str]]:
    """Rows of the printed table's propagation group."""
    m = plan.memory_gb
    cfg = "CFG on" if plan.guidance != 1.0 else "CFG off"
    usable = plan.capacity_gb * plan.usable_fraction
    fits = "fits" if plan.fits else "does NOT fit"
    return [
        (
            "propagation",
            f"{plan.dtype}, offload {plan.offload}, sequence parallel {plan.sequence_parallel}, "
            f"{cfg}",
        ),
        ("  weights resident / all", f"{m['weights']:.3g} GB / {m['weights_all']:.3g} GB"),
        (
            "  activations denoise / VAE",
            f"{m['activations_denoise']:.3g} GB / {m['activations_codec']:.3g} GB",
        ),
        ("propagation peak per GPU", f"{plan.gpu_memory_gb:.3g} GB: {fits} in {usable:.3g} GB"),
    ]


def disk_spec(cfg: DictConfig, cluster: ClusterSpec, node: DictConfig | None) -> DiskSpec:
    """What the run's callbacks keep on disk and the dtypes its checkpoints and exports use."""
    callbacks = cfg.get("callbacks") or {}
    periodic, best = callbacks.get("periodic_checkpoint"), callbacks.get("best_checkpoint")
    export = callbacks.get("export")
    keep_last: int | None = 0
    if periodic:  # PeriodicCheckpoint's keep_last, or a plain ModelCheckpoint's save_top_k
        top_k = periodic.get("save_top_k", -1)
        keep_last = check_keep_last(periodic.keep_last) if "keep_last" in periodic else top_k
        keep_last = None if keep_last == -1 else keep_last
    exports = 0
    if export:
        export_best = export.get("export_best", "auto")
        per_best = export_best is True or (export_best == "auto" and cluster.strategy != "fsdp")
        exports = 1 + int(per_best)
    half = cluster.precision.endswith("-true") and cluster.low_precision is not None
    frozen = node.get("frozen_dtype", "bf16") if node is not None else "bf16"
    return DiskSpec(
        keep_last=keep_last,
        last=bool(periodic and periodic.get("save_last")),
        best=int(bool(best) and best.get("save_top_k", 1) != 0),
        exports=exports,
        param_bytes=2 if half else 4,
        frozen_bytes=2 if frozen in ("bf16", "fp16") else 4,
    )


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.3g} M"


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def plan_table(plan: TrainingPlan) -> list[tuple[str, str]]:
    """Rows (what, value) of the printed table."""
    c, s = plan.cluster, plan.step
    step = (
        f"batch {s.batch_size}/GPU x {s.accumulate_grad_batches} accumulated, stage {s.stage}, "
        f"L_grad {_on_off(bool(s.weights.grad))}, checkpointing {_on_off(s.checkpointing)}"
    )
    rows = [
        ("cluster", f"{c.world_size} GPU x {c.gpu_memory_gb:g} GB, {c.strategy}, {c.precision}"),
        ("sequence parallel", f"{c.sequence_parallel} GPU per sample"),
        ("step", step),
        ("tokens per clip", f"{plan.tokens:,}"),
        (
            "backbone / trainable / encoder params",
            " / ".join(
                _count(n)
                for n in (plan.backbone_params, plan.trainable_params, plan.encoder_params)
            ),
        ),
    ]
    rows += [(f"  {k.replace('_', ' ')}", f"{v:.3g} GB") for k, v in plan.memory_gb.items()]
    fits = "fits" if plan.fits else "does NOT fit"
    usable = c.gpu_memory_gb * c.usable_fraction
    rows += [
        ("peak per GPU", f"{plan.gpu_memory_gb:.3g} GB: {fits} in {usable:.3g} GB usable"),
        *([("fits with", plan.fits_with or "none of the changes tried")] if not plan.fits else []),
        ("PFLOP per step, all GPUs", f"{plan.pflop_per_step:.4g}"),
    ]
    if plan.disk is not None:
        d = plan.disk
        kept = (
            f"{d.total_gb:.4g} GB for {d.checkpoints_kept} checkpoints + {d.exports_kept} "
            f"exports ({d.peak_gb:.4g} GB while one is written)"
            if d.total_gb is not None
            else f"grows by {d.checkpoint_gb:.4g} GB per periodic checkpoint (keep_last: null)"
        )
        rows += [
            ("checkpoint / export on disk", f"{d.checkpoint_gb:.4g} GB / {d.export_gb:.4g} GB"),
            ("disk for the run", kept),
        ]
    return rows


def _print_table(rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="genprop-plan", show_header=False)
    for what, value in rows:
        table.add_row(what, value)
    Console(file=sys.stdout).print(table)


def fit_candidates(plan: TrainingPlan, nodes: int) -> list[str]:
    """``genprop-train`` overrides to try when ``plan`` does not fit, smallest change first:
    more sequence parallelism (no change to what trains), more nodes (more hardware), fewer SCE
    blocks, then L_grad off (both change the model the run trains)."""
    c = plan.cluster
    devices = c.world_size // nodes
    out = [
        f"trainer.sequence_parallel={n}"
        for n in (2, 4, 8, 16)
        if c.strategy == "fsdp" and c.sequence_parallel < n <= devices and devices % n == 0
    ]
    if c.strategy == "fsdp":
        out += [f"trainer.num_nodes={nodes * k}" for k in (2, 4)]
    if plan.sce_blocks > 1:
        out.append(f"model.net.overrides.sce_blocks={plan.sce_blocks // 2}")
    if plan.step.weights.grad:
        out.append("model.loss_weights.grad=0")
    return out


def smallest_fitting_change(args: list[str], plan: TrainingPlan, nodes: int) -> str | None:
    """The first of :func:`fit_candidates` with which the run fits (planned again with it), or
    None. A candidate the config refuses (e.g. a group size that does not divide the heads) is
    skipped."""
    fast = ["+plan.compare_without_checkpointing=false"]
    for candidate in fit_candidates(plan, nodes):
        try:
            with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
                cfg = compose("train", overrides=_overrides([*args, candidate, *fast]))
            if plan_from_config(cfg).fits:
                return candidate
        except (HydraException, OmegaConfBaseException, ValueError):
            continue
    return None


def _overrides(argv: list[str]) -> list[str]:
    """Add ``cluster.gpu_memory_gb`` when no cluster profile has it (``++`` = add or override)."""
    return [f"++{a}" if a.startswith("cluster.gpu_memory_gb=") else a for a in argv]


@console_signals("genprop-plan")
def main(argv: list[str] | None = None) -> int:
    """Console entry point ``genprop-plan`` (the overrides of ``genprop-train``)."""
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    flags = [a for a in args if a.startswith("-") and "=" not in a]
    if flags:
        print(
            f"genprop-plan: unknown option {flags[0]}; it takes genprop-train's overrides "
            "(KEY=VALUE), see genprop-plan --help",
            file=sys.stderr,
        )
        return 2
    register_resolvers()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=_overrides(args))
        check_options(cfg)  # data.batch_size, cluster.gpu_memory_gb, ...: before any planning
        plan = plan_from_config(cfg)
        if not plan.fits and OmegaConf.select(cfg, "plan.suggest", default=True):
            plan.fits_with = smallest_fitting_change(args, plan, _nodes(cfg))
        propagation = propagation_from_config(cfg)
    except (HydraException, OmegaConfBaseException, FileNotFoundError, ValueError) as err:
        cause = err.__cause__ if isinstance(err.__cause__, Exception) else err  # hydra wraps
        lines = str(cause).strip().splitlines() or [type(cause).__name__]
        print(f"genprop-plan: error: {lines[0]}", file=sys.stderr)
        return 2
    _print_table([*plan_table(plan), *propagation_rows(propagation)])
    print(json.dumps({**plan.to_json(), "propagation": propagation.to_json()}, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
