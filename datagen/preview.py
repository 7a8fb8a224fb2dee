"""``genprop-preview``: look at training pairs in shards (a contact sheet PNG and GIFs).

    genprop-preview OUT_DIR_OR_SHARD.tar --out sheet.png [--num 6] [--frames 3] [--gif-dir DIR]

Each sample is a block of ``--frames`` rows (frames spread over the clip) and four columns:
SCE input | G's first frame | target | mask (red over the target), under a caption with the key,
task and prompt. ``--gif-dir`` also writes one animated GIF per sample with the same columns.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import webdataset as wds
from PIL import Image, ImageDraw

from contracts.interrupts import console_signals
from contracts.schema import Sample, SchemaError, decode_sample

CAPTION_H = 14
GAP = 2


class PreviewError(ValueError):
    """An input the preview cannot read; the message names the file and what was expected."""


def iter_samples(path: Path) -> Iterator[Sample]:
    """Samples of one ``.tar`` shard or of every ``*.tar`` in a folder, in order.

    Raises:
        PreviewError: no ``.tar`` in the folder, a file that is not a tar archive, or a sample
            that does not decode (naming the shard and the sample's key).
    """
    tars = sorted(path.glob("*.tar")) if path.is_dir() else [path]
    if not tars:
        raise PreviewError(f"{path}: no .tar shards in this folder (expected genprop-data output)")
    for tar in tars:
        if not tarfile.is_tarfile(tar):
            raise PreviewError(f"{tar}: not a tar archive (expected a WebDataset shard)")
        try:
            for d in wds.WebDataset(str(tar), shardshuffle=False, handler=wds.reraise_exception):
                try:
                    yield decode_sample(d)
                except (SchemaError, KeyError, ValueError) as e:
                    key = d.get("__key__", "?")
                    raise PreviewError(f"{tar}: sample {key!r} does not decode: {e}") from None
        except (tarfile.TarError, OSError) as e:
            raise PreviewError(f"{tar}: unreadable shard ({e})") from None


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


class OneLineParser(argparse.ArgumentParser):
    """Errors are one line, ``genprop-preview: error: ...``, exit 2 (``--help`` unchanged)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject what would fail late (or write nothing) before reading any shard."""
    if not args.path.exists():
        p.error(f"{args.path} does not exist")
    if args.num < 1:
        p.error(f"--num: expected a number of samples >= 1, got {args.num}")
    if args.frames < 1:
        p.error(f"--frames: expected a number of frames >= 1, got {args.frames}")
    # registered_extensions() loads PIL's plugins, so SAVE then lists every writable format.
    if Image.registered_extensions().get(args.out.suffix.lower()) not in Image.SAVE:
        p.error(
            f"--out {args.out}: unknown image extension {args.out.suffix!r} "
            "(expected e.g. .png, .jpg or .webp)"
        )


@console_signals("genprop-preview")
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``genprop-preview``."""
    p = OneLineParser(prog="genprop-preview", description=__doc__.split("\n")[0])
    p.add_argument("path", type=Path, help="a shard .tar or a genprop-data output folder")
    p.add_argument("--out", type=Path, required=True, help="contact sheet PNG to write")
    p.add_argument("--num", type=int, default=6, help="number of samples (default 6)")
    p.add_argument("--frames", type=int, default=3, help="frames shown per sample (default 3)")
    p.add_argument("--gif-dir", type=Path, default=None, help="also write one GIF per sample")
    args = p.parse_args(argv)
    _check_args(p, args)
    samples = []
    try:
        for s in iter_samples(args.path):
            samples.append(s)
            if len(samples) >= args.num:
                break
    except PreviewError as e:
        p.error(str(e))
    if not samples:
        p.error(f"{args.path}: no samples in its shards")
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
