"""GPU benchmark (``make bench-gpu``): bf16 GenProp training step time, peak memory and MFU.

    python -m benchmarks.gpu [--cases wan14b,demo,small,base] [--out outputs/bench/gpu]

On the first CUDA device (``--device``), for each case: a GenProp model with random weights, its
backbone frozen (stage 2, as ``experiment=wan_paper`` trains), fp32 weights with bf16 autocast
(Lightning's ``bf16-mixed``), AdamW over the trainable parameters; one step = the region-aware
loss with L_grad (``genprop.losses.training_losses``) + backward + optimizer step. Reported: the
median wall time of ``--steps`` steps after ``--warmup``, the peak of
``torch.cuda.max_memory_allocated``, the planned peak (``genprop-plan``'s model of the same step,
as a check of the planner), model FLOPs per step from the planner's counter
(:class:`genprop.scale.flops.PhaseFlopCounter`: forward + backward, no recomputation, no frozen
encoders) and MFU = model FLOPs / step time / the card's dense bf16 peak
(:data:`benchmarks.mfu.PEAK_BF16_TFLOPS`, or ``--peak-tflops``).

Cases:

* ``wan14b``: Wan2.1-I2V-14B-480P's published transformer config (width 5120, 40 heads, FFN 13824,
  CLIP image tokens) with its depth cut to ``--wan-layers`` blocks (SCE: ``--wan-sce`` blocks),
  its VAE, at ``--wan-size`` (default 33x480x832 = 14,040 tokens per clip), activation
  checkpointing on. The text encoder is a stand-in of the same output shape (its embeddings are
  cached by ``genprop-cache`` in real runs); the VAE runs in the step.
* ``demo``, ``small``, ``base``: the presets of ``genprop/configs.py`` at batch ``--batch``.

Writes ``OUT.json`` (rows + device) and ``OUT.md`` (markdown table, also printed). Exits with
status 1 and a message when no CUDA device exists.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.mfu import markdown_table, mfu, peak_tflops
from contracts.jsonfile import read_json_object
from genprop.backbones.wan.folder import wan_config
from genprop.configs import GenPropConfig, preset
from genprop.losses import training_losses
from genprop.modeling.model import GenPropModel
from genprop.scale.memory_plan import ClusterSpec, StepSpec, plan_training
from genprop.scale.meta_model import build_meta_model, build_random_model, write_config_folder
from genprop.scale.meta_step import meta_batch
from genprop.video_batch import VideoBatch

WAN_CONFIGS = Path(__file__).resolve().parents[1] / "tests/genprop/wan_configs"
WAN_14B = WAN_CONFIGS / "wan2.1-i2v-14b-480p.json"
CASES = ("wan14b", "demo", "small", "base")
NO_CUDA = (
    "benchmarks.gpu: no CUDA device (torch.cuda.is_available() is False); run it on a GPU "
    "machine with a CUDA build of torch"
)


def wan14b_config(
    folder: Path, *, layers: int, sce_blocks: int, size: tuple[int, int, int], source: Path
) -> GenPropConfig:
    """Wan2.1-I2V-14B-480P's published configs, depth cut to ``layers``, as a config folder."""
    configs = read_json_object(source, what="published Wan configs")
    configs["transformer"] = {**configs["transformer"], "num_layers": layers}
    write_config_folder(configs, folder)
    frames, height, width = size
    return wan_config(folder, num_frames=frames, height=height, width=width, sce_blocks=sce_blocks)


def _trainable(model: GenPropModel) -> list[torch.nn.Parameter]:
    """Mark stage 2's trainable parameters (as the LightningModule does) and return them."""
    model.requires_grad_(False)
    params = model.trainable_parameters("genprop")
    for p in params:
        p.requires_grad_(True)
    return params


def _random_batch(model: GenPropModel, batch: int, device: torch.device) -> VideoBatch:
    gen = torch.Generator().manual_seed(0)
    out = {}
    for key, like in meta_batch(model, batch, "cpu").tensors().items():
        if like.dtype == torch.long:
            out[key] = torch.zeros_like(like).to(device)
        else:
            out[key] = (torch.rand(like.shape, generator=gen) * 2 - 1).to(device)
    out["mask"] = (out["mask"] > 0.5).float()
    return VideoBatch(**out)


def bench_case(
    name: str,
    config: GenPropConfig,
    *,
    batch: int,
    checkpointing: bool,
    device: torch.device,
    steps: int,
    warmup: int,
    peak: float | None,
) -> dict[str, Any]:
    """Time, memory and MFU of one case's training step (see the module docstring)."""
    meta = build_meta_model(config)
    _trainable(meta.model)
    cluster = ClusterSpec(gpu_memory_gb=torch.cuda.get_device_properties(device).total_memory / 1e9)
    step_spec = StepSpec(batch_size=batch, checkpointing=checkpointing)
    plan = plan_training(meta, cluster=cluster, step=step_spec)
    del meta
    torch.manual_seed(0)
    model = build_random_model(config, device)
    for m in model.modules():
        if hasattr(m, "gradient_checkpointing"):
            m.gradient_checkpointing = checkpointing
    optimizer = torch.optim.AdamW(_trainable(model), lr=1e-5)
    data = _random_batch(model, batch, device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)

    def step(i: int) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = training_losses(
                model, data, stage="genprop", generator=torch.Generator().manual_seed(i)
            )["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    times = []
    for i in range(warmup + steps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        step(i)
        torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    model_flops = plan.flops["model"]
    return {
        "case": name,
        "tokens": plan.tokens,
        "batch": batch,
        "checkpointing": checkpointing,
        "step_s": seconds,
        "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9,
        "planned_memory_gb": plan.gpu_memory_gb,
        "model_tflop": model_flops / 1e12,
        "tflops": model_flops / seconds / 1e12,
        "mfu": mfu(model_flops, seconds, peak),
        "backbone_params": plan.backbone_params,
        "trainable_params": plan.trainable_params,
        "flops": plan.flops,
    }


def parse_size(text: str) -> tuple[int, int, int]:
    """``FRAMESxHEIGHTxWIDTH`` (an argparse type) -> (frames, height, width)."""
    try:
        frames, height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FRAMESxHEIGHTxWIDTH, got {text!r}") from None
    return frames, height, width


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma list of {CASES}")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/gpu"))
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="batch of the preset cases")
    parser.add_argument("--wan-layers", type=int, default=2, help="Wan blocks kept")
    parser.add_argument("--wan-sce", type=int, default=1, help="SCE blocks of the Wan case")
    parser.add_argument("--wan-size", type=parse_size, default=(33, 480, 832), help="FxHxW")
    parser.add_argument("--wan-configs", type=Path, default=WAN_14B)
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 without CUDA, 2 on bad arguments."""
    args = _parser().parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        print(f"benchmarks.gpu: --cases: unknown {unknown}, expected {CASES}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 1
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device)
    try:
        peak = peak_tflops(name, args.peak_tflops)
    except ValueError as err:
        print(f"benchmarks.gpu: {err}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            if case == "wan14b":
                config = wan14b_config(
                    Path(tmp) / "wan14b",
                    layers=args.wan_layers,
                    sce_blocks=args.wan_sce,
                    size=args.wan_size,
                    source=args.wan_configs,
                )
                batch, ckpt = 1, True
            else:
                config, batch, ckpt = preset(case), args.batch, False
            row = bench_case(
                case,
                config,
                batch=batch,
                checkpointing=ckpt,
                device=device,
                steps=args.steps,
                warmup=args.warmup,
                peak=peak,
            )
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "flops"}), flush=True)
            torch.cuda.empty_cache()
    table = markdown_table(rows)
    report = {
        "device": name,
        "devices": torch.cuda.device_count(),
        "peak_bf16_tflops": peak,
        "torch": torch.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    header = f"{name} (dense bf16 peak {peak or '?'} TFLOP/s), torch {torch.__version__}\n\n"
    args.out.with_suffix(".md").write_text(header + table + "\n")
    print(header + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
