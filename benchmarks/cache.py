"""Latent cache benchmark (``make bench-cache``): what ``genprop-cache`` saves and what it costs.

    python -m benchmarks.cache [--frames 9] [--size 64] [--samples 8] [--out outputs/bench/cache]

On the CPU, with a tiny random Wan2.2-A14B folder
(``genprop.backbones.wan.pretrained.write_tiny_wan_pipeline``)
and pixel shards of smooth synthetic clips (H.264, as ``genprop-data`` writes them by default):

* **training step**: median wall time of one GenProp step (``training_losses`` + backward +
  AdamW step, stage 2) from pixels (the VAE and text encoder run in the step) and from the cache
  (a model built without encoders, ``EncodedBatch`` input); the ratio is the speed-up;
* **cache build**: wall time of ``genprop-cache`` (in-process, everything: model load, encoder
  checksums, H.264 decode, VAE and text encodes, writing) against the bare VAE-encode floor of the
  same videos (the three encodes a sample needs, in batches of the same size, on decoded tensors;
  the faster of a run before and one after the cache build); the goal is at most 1.2x the floor;
* **bytes per sample**: latent shard (bf16) vs pixel shard.

Writes ``OUT.json`` and ``OUT.md`` (markdown table, also printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from safetensors.torch import load_file

from contracts.schema import SCHEMA_VERSION, Sample, decode_sample, encode_sample
from contracts.tasks import TASKS
from genprop.backbones.wan.pretrained import write_tiny_wan_pipeline
from genprop.losses import training_losses
from genprop.modeling.latents import LatentEncoders
from genprop.modeling.model import GenPropModel
from training.batch import collate_samples, to_model_batch
from training.cache.latent_sample import EMPTY_PROMPT, collate_latents, decode_members
from training.cache.runner import run_cache
from training.model_factory import build_config


def synthetic_sample(key: str, n: int, *, frames: int, size: int) -> Sample:
    """A smooth clip (gradient background, moving square) edited inside a moving mask."""
    rng = np.random.default_rng(n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.empty((frames, size, size, 3), np.uint8)
    mask = np.zeros((frames, size, size), np.uint8)
    colour = rng.integers(0, 255, 3)
    side = size // 4
    for t in range(frames):
        phase = t / max(frames, 1)
        for c in range(3):
            base[t, ..., c] = (255 * (0.5 + 0.5 * np.sin(6 * xx + 4 * yy + phase + c))).astype(
                np.uint8
            )
        y0 = x0 = (size // 4 + t) % (size - side)
        base[t, y0 : y0 + side, x0 : x0 + side] = colour
        mask[t, y0 : y0 + side, x0 : x0 + side] = 1
    sce = base.copy()
    sce[mask.astype(bool)] = 0
    task = TASKS[n % len(TASKS)]
    meta = {
        "task": task,
        "recipe": "synthetic",
        "prompt": f"remove the red car {n}",
        "source": "bench",
        "video_id": key,
        "object_ids": [1],
        "frame_indices": list(range(frames)),
        "fps": 8.0,
        "seed": n,
        "schema_version": SCHEMA_VERSION,
        "params": {},
    }
    return Sample(key, sce, base[0].copy(), base, mask, meta)


def write_pixel_shards(
    folder: Path, *, shards: int, per_shard: int, frames: int, size: int
) -> None:
    """H.264 pixel shards (``genprop-data``'s default encoding)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for s in range(shards):
        with wds.TarWriter(str(folder / f"train-{s:06d}.tar")) as sink:
            for _ in range(per_shard):
                sample = synthetic_sample(f"s{n:06d}", n, frames=frames, size=size)
                sink.write(encode_sample(sample, codec="h264", crf=18, preset="medium"))
                n += 1


def _read(folder: Path, decode: Any) -> list[Any]:
    urls = [{"url": str(p)} for p in sorted(folder.glob("*.tar"))]
    return [decode(d) for d in wds.tarfile_to_samples()(urls)]


def _median_step(model: GenPropModel, batch: Any, steps: int, warmup: int) -> float:
    params = model.trainable_parameters("genprop")
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(i)
        loss = training_losses(model, batch, stage="genprop", generator=gen, expert_seed=i)
        loss["total"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def vae_floor(encoders: LatentEncoders, samples: list[Sample], batch: int, frames: int) -> float:
    """Seconds of the three VAE encodes per sample (target, SCE input, first-frame video)."""
    total = 0.0
    for i in range(0, len(samples), batch):
        pixels = to_model_batch(collate_samples(samples[i : i + batch], num_frames=frames))
        with torch.no_grad():
            t0 = time.perf_counter()
            encoders.codec.encode(pixels.target)
            encoders.codec.encode(pixels.sce)
            encoders.encode_first_frame(pixels.first, frames)
            total += time.perf_counter() - t0
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pipeline = write_tiny_wan_pipeline(root / "wan", seed=0)
        per_shard = max(1, args.samples // args.shards)
        write_pixel_shards(
            root / "px", shards=args.shards, per_shard=per_shard, frames=args.frames, size=args.size
        )
        overrides = {"num_frames": args.frames, "height": args.size, "width": args.size}
        overrides["text"] = {"max_tokens": 16}
        net = {"preset_name": None, "pretrained": str(pipeline), "overrides": overrides}
        cfg = build_config(preset_name=None, pretrained=str(pipeline), overrides=overrides)
        decoded = _read(root / "px", decode_sample)
        encoders = LatentEncoders(cfg).eval()
        # The floor is timed before and after the cache build and the faster one kept: on a
        # shared machine this keeps the ratio on the conservative side.
        floor_s = vae_floor(encoders, decoded, args.batch, args.frames)
        t0 = time.perf_counter()
        manifest = run_cache(
            {
                "data": {"shards": str(root / "px")},
                "model": {"net": net},
                "output_dir": str(root / "lat"),
                "dtype": "bf16",
                "batch_size": args.batch,
                "progress": False,
                "ray": {"enabled": False},
            }
        )
        cache_s = time.perf_counter() - t0
        samples = manifest["samples"]
        floor_s = min(floor_s, vae_floor(encoders, decoded, args.batch, args.frames))
        full = GenPropModel.from_config(cfg)
        light = GenPropModel.from_config(cfg, encoders=False)
        pixels = to_model_batch(collate_samples(decoded[: args.batch], num_frames=args.frames))
        cached = _read(root / "lat", decode_members)[: args.batch]
        latents = collate_latents(cached, load_file(str(root / "lat" / EMPTY_PROMPT)))
        step_pixels = _median_step(full, pixels, args.steps, args.warmup)
        step_latents = _median_step(light, latents, args.steps, args.warmup)
        pixel_bytes = sum(p.stat().st_size for p in (root / "px").glob("*.tar"))
        latent_bytes = sum(p.stat().st_size for p in (root / "lat").glob("*.tar"))
    return {
        "geometry": {"frames": args.frames, "height": args.size, "width": args.size},
        "samples": samples,
        "batch": args.batch,
        "threads": args.threads,
        "step_s_pixels": step_pixels,
        "step_s_latents": step_latents,
        "step_speedup": step_pixels / step_latents,
        "cache_s": cache_s,
        "vae_floor_s": floor_s,
        "cache_over_floor": cache_s / floor_s,
        "cache_samples_per_s": samples / cache_s,
        "floor_samples_per_s": samples / floor_s,
        "bytes_per_sample_pixels": pixel_bytes / samples,
        "bytes_per_sample_latents_bf16": latent_bytes / samples,
    }


def markdown(r: dict[str, Any]) -> str:
    g = r["geometry"]
    rows = [
        (
            "training step, from pixels (VAE + text encoder in the step)",
            f"{r['step_s_pixels']:.3f} s",
        ),
        ("training step, from the latent cache", f"{r['step_s_latents']:.3f} s"),
        ("step speed-up with the cache", f"{r['step_speedup']:.2f}x"),
        ("cache build (whole genprop-cache job)", f"{r['cache_samples_per_s']:.2f} samples/s"),
        ("bare VAE-encode floor, same videos", f"{r['floor_samples_per_s']:.2f} samples/s"),
        ("cache build time / floor (goal <= 1.2x)", f"{r['cache_over_floor']:.2f}x"),
        ("bytes per sample, pixel shard (H.264)", f"{r['bytes_per_sample_pixels']:,.0f}"),
        ("bytes per sample, latent shard (bf16)", f"{r['bytes_per_sample_latents_bf16']:,.0f}"),
    ]
    head = (
        f"Tiny Wan2.2-A14B, CPU ({r['threads']} threads), {r['samples']} samples of "
        f"{g['frames']}x{g['height']}x{g['width']}, batch {r['batch']}\n\n"
    )
    lines = ["| measure | value |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache", description=__doc__)
    parser.add_argument("--frames", type=int, default=9, help="clip frames (4k + 1)")
    parser.add_argument("--size", type=int, default=64, help="clip height = width (multiple of 16)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument(
        "--batch", type=int, default=2, help="training batch and cache encode batch"
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="outputs/bench/cache", help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
