"""``genprop-preview``: look at training pairs in shards (a contact sheet PNG and GIFs).

    genprop-preview OUT_DIR_OR_SHARD.tar --out sheet.png [--num 6] [--frames 3] [--gif-dir DIR]

Each sample is a block of ``--frames`` rows (frames spread over the clip) and four columns:
SCE input | G's first frame | target | mask (red over the target), under a caption with the key,
task and prompt. ``--gif-dir`` also writes one animated GIF per sample with the same columns.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image, ImageDraw

from contracts.schema import Sample, decode_sample

CAPTION_H = 14
GAP = 2


def iter_samples(path: Path) -> Iterator[Sample]:
    """Samples of one ``.tar`` shard or of every ``shard-*.tar`` in a folder, in order."""
    tars = sorted(path.glob("*.tar")) if path.is_dir() else [path]
    if not tars:
        raise FileNotFoundError(f"no .tar shards in {path}")
    for tar in tars:
        for d in wds.WebDataset(str(tar), shardshuffle=False):
            yield decode_sample(d)


def mask_overlay(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``frame`` dimmed, with ``mask`` ``(H, W)`` painted half red."""
    out = frame.astype(np.float32) * 0.6
    out[mask > 0] = 0.5 * out[mask > 0] + 0.5 * np.array([255, 0, 0])
    return out.astype(np.uint8)


def sample_row(s: Sample, t: int, *, first: bool = True) -> np.ndarray:
    """``(H, 4W + 3 GAP, 3)``: SCE_t | first frame | target_t | mask_t over target_t."""
    H = s.first.shape[0]
    gap = np.full((H, GAP, 3), 255, np.uint8)
    first_img = s.first if first else np.full_like(s.first, 40)
    tiles = [s.sce[t], first_img, s.target[t], mask_overlay(s.target[t], s.mask[t])]
    return np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2], gap, tiles[3]], axis=1)


def sample_block(s: Sample, frames: int) -> Image.Image:
    """One sample: caption plus ``frames`` rows spread over the clip."""
    T = s.sce.shape[0]
    ts = np.unique(np.linspace(0, T - 1, max(frames, 1)).round().astype(int))
    rows = [sample_row(s, int(t), first=(k == 0)) for k, t in enumerate(ts)]
    body = np.concatenate(
        [np.pad(r, ((0, GAP), (0, 0), (0, 0)), constant_values=255) for r in rows]
    )
    img = Image.new("RGB", (body.shape[1], body.shape[0] + CAPTION_H), "white")
    img.paste(Image.fromarray(body), (0, CAPTION_H))
    text = f"{s.key}  {s.meta['task']}  t={[int(t) for t in ts]}  {s.meta['prompt']!r}"
    ImageDraw.Draw(img).text((2, 1), text, fill=(0, 0, 0))
    return img


def contact_sheet(samples: Sequence[Sample], *, frames: int = 3) -> Image.Image:
    """Stack the blocks of ``samples`` vertically (header: the column names)."""
    blocks = [sample_block(s, frames) for s in samples]
    W = max(b.width for b in blocks)
    header = Image.new("RGB", (W, CAPTION_H), (230, 230, 230))
    tile_w = (samples[0].first.shape[1] + GAP) if samples else 0
    draw = ImageDraw.Draw(header)
    for k, name in enumerate(("SCE input", "first frame", "target", "mask")):
        draw.text((2 + k * tile_w, 1), name, fill=(0, 0, 0))
    sheet = Image.new("RGB", (W, CAPTION_H + sum(b.height for b in blocks)), "white")
    sheet.paste(header, (0, 0))
    y = CAPTION_H
    for b in blocks:
        sheet.paste(b, (0, y))
        y += b.height
    return sheet


def write_gif(s: Sample, path: Path, *, fps: float | None = None) -> Path:
    """An animated GIF of the sample's four columns over every frame."""
    frames = [Image.fromarray(sample_row(s, t)) for t in range(s.sce.shape[0])]
    duration = int(1000 / (fps or s.meta.get("fps") or 6.0))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``genprop-preview``."""
    p = argparse.ArgumentParser(prog="genprop-preview", description=__doc__.split("\n")[0])
    p.add_argument("path", type=Path, help="a shard .tar or a genprop-data output folder")
    p.add_argument("--out", type=Path, required=True, help="contact sheet PNG to write")
    p.add_argument("--num", type=int, default=6, help="number of samples (default 6)")
    p.add_argument("--frames", type=int, default=3, help="frames shown per sample (default 3)")
    p.add_argument("--gif-dir", type=Path, default=None, help="also write one GIF per sample")
    args = p.parse_args(argv)
    if not args.path.exists():
        p.error(f"{args.path} does not exist")
    samples = []
    for s in iter_samples(args.path):
        samples.append(s)
        if len(samples) >= args.num:
            break
    if not samples:
        p.error(f"no samples in {args.path}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(samples, frames=args.frames).save(args.out)
    print(f"wrote {args.out} ({len(samples)} samples)")
    if args.gif_dir is not None:
        args.gif_dir.mkdir(parents=True, exist_ok=True)
        for s in samples:
            write_gif(s, args.gif_dir / f"{s.key}.gif")
        print(f"wrote {len(samples)} GIFs to {args.gif_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
