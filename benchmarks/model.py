"""Model benchmark (``python -m benchmarks.model``): step times, sampling time, memory, MFU.

Measures in one run, on the same device: the bare backbone's I2V training step (forward +
backward + AdamW), GenProp's training step with a frozen backbone (with and without L_grad), their
ratio, sampling time per output frame, and peak memory. On CUDA it also runs in bf16 autocast and
reports model FLOPs utilisation from :func:`genprop.scale.flops.estimate_flops` and the card's peak
(:data:`benchmarks.mfu.PEAK_BF16_TFLOPS`).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.mfu import mfu, peak_tflops
from genprop.configs import preset
from genprop.inference.sampler import sample_latents
from genprop.losses import training_losses
from genprop.modeling.model import GenPropModel
from genprop.region_aware_loss import LossWeights
from genprop.scale.flops import estimate_flops
from genprop.video_batch import VideoBatch


def _batch(model: GenPropModel, batch: int, device: torch.device) -> VideoBatch:
    gen = torch.Generator().manual_seed(0)
    cfg = model.config
    t, h, w = cfg.num_frames, cfg.height, cfg.width
    mask = torch.zeros(batch, t, h, w)
    mask[:, :, h // 4 : h // 2, w // 4 : w // 2] = 1
    return VideoBatch(
        target=(torch.rand(batch, t, 3, h, w, generator=gen) * 2 - 1).to(device),
        first=(torch.rand(batch, 3, h, w, generator=gen) * 2 - 1).to(device),
        sce=(torch.rand(batch, t, 3, h, w, generator=gen) * 2 - 1).to(device),
        mask=mask.to(device),
        task=torch.zeros(batch, dtype=torch.long, device=device),
    )


def _median_time(fn: Callable[[], None], iters: int, device: torch.device) -> float:
    """Median seconds per call: wall clock on CUDA; process CPU time on CPU, which on a shared
    machine is far less noisy than wall time (compare runs with the same thread count)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    times = []
    for _ in range(iters + 1):  # first call is warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - start)
    return statistics.median(times[1:])


def _train_step(
    model: GenPropModel, batch: VideoBatch, stage: str, weights: LossWeights, amp: bool
):
    params = [p for p in model.trainable_parameters(stage) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    device = batch.target.device

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = training_losses(model, batch, stage=stage, weights=weights)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def benchmark(
    name: str, *, batch: int = 2, iters: int = 3, steps: int = 4, device: str = "cpu"
) -> dict:
    """Benchmark a preset; returns a JSON-friendly dict of timings (seconds) and memory (MiB)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = GenPropModel.from_config(preset(name)).to(dev)
    data = _batch(model, batch, dev)
    amp = dev.type == "cuda"
    result: dict = {"preset": name, "batch": batch, "device": str(dev), "bf16": amp}
    result["clock"] = (
        "wall" if dev.type == "cuda" else f"cpu_time ({torch.get_num_threads()} threads)"
    )
    if dev.type == "cuda":
        result["card"] = torch.cuda.get_device_name(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    full, no_grad = LossWeights(), LossWeights(grad=0.0)
    result["i2v_step_s"] = _median_time(_train_step(model, data, "i2v", full, amp), iters, dev)
    model.freeze_backbone()
    result["genprop_step_s"] = _median_time(
        _train_step(model, data, "genprop", full, amp), iters, dev
    )
    result["genprop_step_no_lgrad_s"] = _median_time(
        _train_step(model, data, "genprop", no_grad, amp), iters, dev
    )
    result["ratio"] = result["genprop_step_s"] / result["i2v_step_s"]
    result["ratio_no_lgrad"] = result["genprop_step_no_lgrad_s"] / result["i2v_step_s"]
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        first = model.encode_first_frame(data.first[:1], model.config.num_frames)
        content = model.codec.encode(data.sce[:1])

        def sample() -> None:
            sample_latents(model, first, content=content, task=data.task[:1], steps=steps)

        per_clip = _median_time(sample, iters, dev)
    result["sample_steps"] = steps
    result["sample_s_per_frame"] = per_clip / model.config.num_frames
    result["peak_memory_mb"] = _peak_memory_mb(dev)
    flops = estimate_flops(model.config, batch=batch)
    result["genprop_train_flops"] = flops["genprop_train_step"]
    if amp:
        peak = peak_tflops(result["card"])
        if peak:
            step_s = result["genprop_step_no_lgrad_s"]
            result["mfu_no_lgrad"] = mfu(flops["genprop_train_step"], step_s, peak)
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m benchmarks.model --preset demo --preset small --out bench.json``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.model", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--preset", action="append", help="preset name (repeatable)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="sampling steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.preset or ["demo"]:
        row = benchmark(
            name, batch=args.batch, iters=args.iters, steps=args.steps, device=args.device
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
