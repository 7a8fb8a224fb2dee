"""Training-throughput benchmark: does the shard loader keep up with the training step?

    python -m benchmarks.train --out outputs/bench/train.json [--shards DIR] [--preset demo]

In one run, at the ``demo`` preset's clip size (8x64x64):

* ``loader``: samples/s of :class:`training.datamodule.ShardDataModule` alone (shard reading +
  H.264/PNG/npz decoding + batching) with ``--workers`` worker processes;
* ``train``: samples/s of the stage-2 training step (paper loss, frozen backbone, forward +
  backward + AdamW + EMA) on a batch already in memory;
* ``ratio`` = loader / train (target: >= 3).

The two are timed one after the other, each with the whole machine, so the ratio says how much
head-room the loader has; when they share cores in a real run, the data-wait fraction logged by
:class:`training.callbacks.TrainingSpeedMonitor` is the direct measure. Without ``--shards`` a
synthetic set in the real schema (H.264, as ``genprop-data`` writes by default) is generated
first. With CUDA, the ``--gpu-preset`` step is also timed in bf16 autocast and reported with the
card's name and the MFU from ``genprop.scale.flops.estimate_flops`` (train step = 3 x forward FLOPs)
against the card's peak in :data:`benchmarks.mfu.PEAK_BF16_TFLOPS`.
Writes ``--out`` (JSON) and the same name with ``.md`` (a table for the README).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds

from benchmarks.mfu import mfu, peak_tflops
from contracts.schema import SCHEMA_VERSION, Sample, encode_sample
from contracts.tasks import TASKS
from genprop.configs import preset
from genprop.scale.flops import estimate_flops
from genprop.video_batch import VideoBatch
from training.batch import to_model_batch
from training.datamodule import ShardDataModule
from training.model_factory import build_model
from training.module import GenPropLitModule


def write_synthetic_shards(
    folder: Path, *, frames: int, size: int, shards: int, per_shard: int
) -> None:
    """Smooth moving-gradient clips (realistic for H.264) in the shard schema."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    n = 0
    for s in range(shards):
        with wds.TarWriter(str(folder / f"bench-{s:06d}.tar")) as sink:
            for _ in range(per_shard):
                phase = rng.uniform(0, 6.28, 3)
                video = np.stack(
                    [
                        np.stack(
                            [
                                127 + 100 * np.sin(xx / 9 + t / 3 + phase[c] + yy / 13)
                                for c in range(3)
                            ],
                            -1,
                        )
                        for t in range(frames)
                    ]
                ).astype(np.uint8)
                mask = np.zeros((frames, size, size), np.uint8)
                mask[:, size // 4 : size // 2, size // 4 : size // 2] = 1
                meta = {
                    "task": TASKS[n % len(TASKS)],
                    "recipe": "bench",
                    "prompt": "",
                    "source": "bench",
                    "video_id": str(n),
                    "object_ids": [1],
                    "frame_indices": list(range(frames)),
                    "fps": 8.0,
                    "seed": n,
                    "schema_version": SCHEMA_VERSION,
                    "params": {},
                }
                sce = video.copy()
                sce[mask.astype(bool)] = 0
                sample = Sample(f"b{n:06d}", sce, video[0].copy(), video, mask, meta)
                sink.write(encode_sample(sample, codec="h264", preset="veryfast"))
                n += 1


def loader_samples_per_sec(shards: Path, *, batch: int, workers: int, batches: int) -> float:
    """Samples/s of the training stream (after the first batch, which pays worker start-up)."""
    dm = ShardDataModule(
        shards=shards,
        batch_size=batch,
        num_workers=workers,
        resampled=True,
        epoch_batches=batches + 1,
        shuffle_buffer=16,
        pin_memory=False,
    )
    it = iter(dm.train_dataloader())
    next(it)
    start = time.perf_counter()
    n = sum(int(b["target"].shape[0]) for b in it)
    return n / (time.perf_counter() - start)


def train_samples_per_sec(
    preset_name: str, batch: VideoBatch, *, steps: int, device: str, bf16: bool
) -> float:
    """Samples/s of optimizer steps of the paper's stage-2 loss on a fixed batch."""
    module = GenPropLitModule(
        net=build_model(preset_name=preset_name),
        optimizer=lambda params: torch.optim.AdamW(params, lr=5e-5),
    )
    module.to(device)
    opt = module.configure_optimizers()
    params = [p for _, p in module.trainable_named_parameters()]
    batch = batch.to(device)

    def step(i: int) -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = module.compute_losses(batch, seed=i, step=i)["total"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        module.ema.update(module.net)

    step(0)  # warm-up (allocations, kernels)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch.batch_size / (time.perf_counter() - start)


def synthetic_batch(preset_name: str, batch_size: int) -> VideoBatch:
    """A model batch of the preset's clip geometry."""
    cfg = preset(preset_name)
    t, h, w = cfg.num_frames, cfg.height, cfg.width
    g = torch.Generator().manual_seed(0)
    video = lambda: torch.rand(batch_size, t, 3, h, w, generator=g) * 2 - 1  # noqa: E731
    return VideoBatch(
        sce=video(),
        target=video(),
        first=video()[:, 0],
        mask=(torch.rand(batch_size, t, h, w, generator=g) > 0.7).float(),
        task=torch.arange(batch_size) % len(TASKS),
        prompt=[""] * batch_size,
    )


def peak_flops(name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a card, from its name (:func:`benchmarks.mfu.peak_tflops`);
    None if unknown."""
    tflops = peak_tflops(name)
    return None if tflops is None else tflops * 1e12


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return the JSON-able result."""
    cfg = preset(args.preset)
    result: dict[str, Any] = {
        "preset": args.preset,
        "clip": [cfg.num_frames, cfg.height, cfg.width],
        "batch_size": args.batch,
        "workers": args.workers,
        "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(args.shards) if args.shards else Path(tmp)
        if not args.shards:
            write_synthetic_shards(
                shards,
                frames=cfg.num_frames,
                size=cfg.height,
                shards=4,
                per_shard=args.synthetic_per_shard,
            )
        result["shards"] = str(args.shards or "synthetic h264")
        loader = loader_samples_per_sec(
            shards, batch=args.batch, workers=args.workers, batches=args.loader_batches
        )
        dm = ShardDataModule(shards=shards, batch_size=args.batch, num_workers=0, pin_memory=False)
        batch = to_model_batch(dm.on_before_batch_transfer(next(iter(dm.train_dataloader())), 0))
    train = train_samples_per_sec(args.preset, batch, steps=args.steps, device="cpu", bf16=False)
    result.update(loader_samples_per_sec=loader, train_samples_per_sec=train, ratio=loader / train)
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        gb = synthetic_batch(args.gpu_preset, args.gpu_batch)
        sps = train_samples_per_sec(args.gpu_preset, gb, steps=args.steps, device="cuda", bf16=True)
        flops = estimate_flops(preset(args.gpu_preset))["genprop_train_step"]
        peak = peak_tflops(name)
        result["gpu"] = {
            "card": name,
            "preset": args.gpu_preset,
            "batch_size": args.gpu_batch,
            "bf16_samples_per_sec": sps,
            "train_flops_per_sample": flops,
            "mfu": mfu(flops, 1 / sps, peak),  # one sample's FLOPs in one sample's seconds
        }
    return result


def markdown(r: dict[str, Any]) -> str:
    """The result as a README table."""
    clip = f"{r['preset']} / {tuple(r['clip'])} / {r['batch_size']}"
    rows = [
        ("preset / clip (T,H,W) / batch", clip),
        (f"loader samples/s ({r['workers']} workers, {r['shards']})", r["loader_samples_per_sec"]),
        (
            f"train step samples/s (CPU fp32, {r['torch_threads']} threads)",
            r["train_samples_per_sec"],
        ),
        ("ratio loader / step (target >= 3)", f"{r['ratio']:.1f}x"),
    ]
    if "gpu" in r:
        g = r["gpu"]
        mfu = "n/a" if g["mfu"] is None else f"{100 * g['mfu']:.1f} %"
        what = f"{g['card']} bf16 samples/s ({g['preset']}, batch {g['batch_size']})"
        rows += [(what, g["bf16_samples_per_sec"]), (f"{g['card']} MFU", mfu)]
    cells = [(k, f"{v:.2f}" if isinstance(v, float) else v) for k, v in rows]
    return (
        "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in cells)])
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (``python -m benchmarks.train``)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.train", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", default="outputs/bench/train.json")
    p.add_argument("--shards", default=None, help="shards to read (default: synthetic, generated)")
    p.add_argument("--preset", default="demo")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--loader-batches", type=int, default=40)
    p.add_argument(
        "--synthetic-per-shard", type=int, default=32, help="samples per synthetic shard"
    )
    p.add_argument("--gpu-preset", default="small")
    p.add_argument("--gpu-batch", type=int, default=8)
    args = p.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
