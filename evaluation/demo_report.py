"""Write the demo report: targets, results table, bar chart, training curves, side-by-side GIFs.

``python -m evaluation.demo_report --demo-dir outputs/demo`` reads what the demo steps wrote::

    DEMO/cases/                      benchmark cases (genprop-toyworld benchmark; --cases DIR
                                     names another folder)
    DEMO/codec/report.json           (optional) stage 0: the learned autoencoder's held-out PSNR
    DEMO/eval/metrics.{json,md,png}  genprop-eval of GenProp and every baseline
    DEMO/eval/genprop/<id>/          GenProp outputs, <id>_masks/ its MPD masks
    DEMO/train/<stage>/tensorboard/  training logs of each stage
    DEMO/ablate/<name>/eval/metrics.json   (optional, ``make ablate``)
    DEMO/curve/curve.{md,png}        (optional, ``make demo-curve``)

and writes ``DEMO/report.md`` with its pictures under ``DEMO/report/``. Every target of the issue
is evaluated from the numbers and reported as met or not, with the numbers; nothing is assumed.

``--publish DIR`` (``make demo`` passes ``--publish docs``) also writes the report as a docs page:
``DIR/results.md``, the same text under a header that says it is generated, with every picture it
shows copied into ``DIR/results/`` and its link pointing there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from contracts.cases import INDEX, CaseFolder, output_masks
from evaluation.targets import HEADLINE_METRICS, average, evaluate_targets
from genprop.inference.video_io import list_frame_files, read_image, read_video

REPO_README = Path(__file__).resolve().parents[1] / "README.md"
PICTURE_SUFFIXES = (".gif", ".png", ".jpg", ".jpeg", ".svg", ".webp")
IMAGE_LINK = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)(\))")

CURVE_TAGS = ("train/total", "train/diffusion", "train/mask", "train/non_mask", "train/grad",
              "train/mpd", "train/gated", "train/gate")  # fmt: skip


def training_curves(train_dir: Path, out: Path) -> Path | None:
    """Plot every stage's loss terms from its TensorBoard events; None when there are none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    stages = sorted(p for p in train_dir.glob("*/tensorboard") if p.is_dir())
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for tb in stages:
        acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
        acc.Reload()
        tags = [t for t in acc.Tags().get("scalars", []) if t in CURVE_TAGS]
        series[tb.parent.name] = {
            t: ([e.step for e in acc.Scalars(t)], [e.value for e in acc.Scalars(t)]) for t in tags
        }
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.4), squeeze=False)
    for ax, (stage, tags) in zip(axes[0], series.items(), strict=True):
        for tag, (steps, values) in tags.items():
            ax.plot(steps, _smooth(values), label=tag.split("/", 1)[1])
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(stage)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _smooth(values: list[float], k: int = 9) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if len(v) < k:
        return v
    kernel = np.ones(k) / k
    return np.convolve(np.pad(v, (k // 2, k // 2), mode="edge"), kernel, mode="valid")


def side_by_side_gif(case_dir: Path, eval_dir: Path, out: Path, *, scale: int = 2) -> Path | None:
    """input | edited first frame | GenProp | ground truth | predicted mask, one GIF per case."""
    case_id = case_dir.name
    out_dir = eval_dir / "genprop" / case_id
    if not out_dir.is_dir():
        return None
    case = CaseFolder(case_dir)
    video = read_video(case.input).frames
    gt = read_video(case.gt).frames
    pred = read_video(out_dir).frames
    first = np.asarray(Image.open(case.first_frame).convert("RGB"))
    mask_dir = output_masks(eval_dir / "genprop", case_id)
    masks = (  # grey levels: the MPD's soft masks as written
        np.stack([read_image(f, mode="L") for f in list_frame_files(mask_dir)])
        if mask_dir.is_dir()
        else np.zeros(video.shape[:3], np.uint8)
    )
    labels = ("input", "edited frame 0", "GenProp", "ground truth", "predicted mask")
    frames = []
    for t in range(min(len(video), len(pred), len(gt))):
        m = masks[min(t, len(masks) - 1)]
        m = np.repeat(m[..., None], 3, axis=-1)
        row = np.concatenate([video[t], first, pred[t], gt[t], m], axis=1)
        row = np.kron(row, np.ones((scale, scale, 1), np.uint8))
        canvas = Image.new("RGB", (row.shape[1], row.shape[0] + 12), "white")
        canvas.paste(Image.fromarray(row), (0, 12))
        draw = ImageDraw.Draw(canvas)
        w = row.shape[1] // len(labels)
        for i, label in enumerate(labels):
            draw.text((i * w + 2, 0), label, fill="black")
        frames.append(canvas)
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=250, loop=0)
    return out


CODEC_PSNR_GOAL_DB = 32.0  # the stage-0 autoencoder's held-out reconstruction goal


def codec_lines(demo_dir: Path) -> list[str]:
    """The stage-0 section: the learned autoencoder's held-out PSNR against its goal (none
    without ``demo_dir/codec/report.json``, e.g. the pixel-space demo)."""
    path = demo_dir / "codec" / "report.json"
    if not path.is_file():
        return []
    r = json.loads(path.read_text())
    db = float(r["heldout_psnr_db"])
    f, c = r.get("spatial_factor"), r.get("latent_channels")
    met = "yes" if db >= CODEC_PSNR_GOAL_DB else "NO"
    return [
        "## Stage 0: the video autoencoder",
        "",
        f"A learned per-frame autoencoder ({f}x smaller in H and W, {c} latent channels), trained "
        f"for {r.get('train_seconds', 0) / 60:.1f} minutes ({r.get('steps')} steps, "
        f"{r.get('threads', 1)} threads); "
        "stages 1 and 2 train on its cached latents.",
        "",
        "| held-out reconstruction PSNR | before training | goal | met |",
        "|---|---|---|---|",
        f"| {db:.2f} dB | {float(r['initial_heldout_psnr_db']):.2f} dB "
        f"| >= {CODEC_PSNR_GOAL_DB:.0f} dB | {met} |",
        "",
    ]


def write_report(demo_dir: Path, cases_dir: Path | None = None) -> Path:
    """Assemble ``demo_dir/report.md`` (cases from ``cases_dir``, default ``demo_dir/cases``);
    returns its path."""
    eval_dir = demo_dir / "eval"
    cases_dir = demo_dir / "cases" if cases_dir is None else cases_dir
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    pics = demo_dir / "report"
    pics.mkdir(parents=True, exist_ok=True)
    lines = ["# GenProp demo report", ""]
    space = (
        "on the latents of its learned autoencoder (stage 0)"
        if (demo_dir / "codec" / "report.json").is_file()
        else "on patchified pixels"
    )
    lines += [
        "Toy-world benchmark (held-out seeds), GenProp trained from scratch on the toy world "
        f"{space} (`make demo` on CPU, `make demo-pixel` in pixel space, `make demo-gpu` on one "
        "GPU).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for row in evaluate_targets(metrics):
        lines.append(f"| {row['target']} | {row['measured']} | {'yes' if row['met'] else 'NO'} |")
    lines += ["", *codec_lines(demo_dir), "## Results", ""]
    table = (eval_dir / "metrics.md").read_text().split("\n", 1)[1]  # drop its own title
    lines += [table.replace("\n## ", "\n### "), "", "![metrics](eval/metrics.png)", ""]
    ablations = sorted((demo_dir / "ablate").glob("*/eval/metrics.json"))
    if ablations:
        lines += _ablation_table(metrics, ablations)
    curve = demo_dir / "curve" / "curve.md"
    if curve.is_file():  # `make demo-curve`
        lines += ["## Quality vs training compute", "", "Both stages' steps × the scale; "
                  "GenProp on the same cases.", "", curve.read_text(), "",
                  "![curve](curve/curve.png)", ""]  # fmt: skip
    curves = training_curves(demo_dir / "train", pics / "training_curves.png")
    if curves:
        lines += ["## Training curves", "", "![training curves](report/training_curves.png)", ""]
    lines += ["## Side by side", "", "input | edited first frame | GenProp | ground truth | "
              "predicted mask (MPD)", ""]  # fmt: skip
    index = json.loads((cases_dir / INDEX).read_text())
    shown: set[str] = set()
    for case in index["cases"]:
        if case["task"] in shown:
            continue
        gif = side_by_side_gif(cases_dir / case["dir"], eval_dir, pics / f"{case['id']}.gif")
        if gif:
            shown.add(case["task"])
            title = f"**{case['task']}** (`{case['id']}`)"
            lines += [title, "", f"![{case['id']}](report/{gif.name})", ""]
    out = demo_dir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _ablation_table(metrics: dict[str, Any], paths: list[Path]) -> list[str]:
    cols = HEADLINE_METRICS
    runs = [("GenProp (full)", metrics)]
    runs += [(p.parents[1].name, json.loads(p.read_text())) for p in paths]
    lines = [
        "## Ablations (paper Table 3)",
        "",
        "| run | " + " | ".join(f"{t} {m}" for t, m in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, m in runs:
        cells = [f"{average(m, t, 'genprop', k):.3f}" for t, k in cols]
        lines.append(f"| {name} | " + " | ".join(cells).replace("nan", "–") + " |")
    return [*lines, ""]


def publish_report(report: Path, out_dir: Path) -> Path:
    """Write ``report`` as the docs page ``out_dir/results.md``; returns its path.

    The page is the report's text under a header saying it is generated; each picture the report
    shows is copied into ``out_dir/results/`` and its link rewritten to that copy (a link to a
    missing file becomes a note). Pictures that an earlier publish left there and this report no
    longer shows are removed.
    """
    pics = out_dir / "results"
    pics.mkdir(parents=True, exist_ok=True)
    copies: dict[Path, str] = {}  # source picture -> its name under pics

    def relink(match: re.Match[str]) -> str:
        target = match.group(2)
        src = report.parent / target
        if "://" in target or Path(target).is_absolute():
            return match.group(0)
        if not src.is_file():  # a link the docs page could not follow
            return f"*(picture not found: `{target}`)*"
        src = src.resolve()
        if src not in copies:
            name, n = Path(target).name, 1
            while name in copies.values():  # the same file name from another folder
                n += 1
                name = f"{Path(target).stem}_{n}{Path(target).suffix}"
            copies[src] = name
        return f"{match.group(1)}results/{copies[src]}{match.group(3)}"

    body = IMAGE_LINK.sub(relink, report.read_text())
    for src, name in copies.items():
        shutil.copyfile(src, pics / name)
    for old in pics.iterdir():
        if old.suffix.lower() in PICTURE_SUFFIXES and old.name not in copies.values():
            old.unlink()
    title, _, rest = body.partition("\n") if body.startswith("# ") else ("", "", body)
    note = (
        f"> Generated by `make demo` from `{report}` (`python -m evaluation.demo_report "
        f"--demo-dir {report.parent} --publish {out_dir}`). Do not edit this page by hand: rerun "
        "`make demo` to update it."
    )
    if _inside(out_dir, REPO_README.parent) and REPO_README.is_file():
        back = os.path.relpath(REPO_README, out_dir.resolve()).replace(os.sep, "/")
        note += f" Back to the [README]({back})."
    comment = "<!-- Generated by `make demo` (evaluation/demo_report.py): do not edit by hand. -->"
    head = [comment, title, "", note] if title else [comment, note]
    out = out_dir / "results.md"
    out.write_text("\n".join(head) + "\n\n" + rest.lstrip("\n"))
    return out


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-dir", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--cases", type=Path, help="the benchmark cases (default DEMO_DIR/cases)")
    parser.add_argument(
        "--publish",
        type=Path,
        metavar="DIR",
        help="also write the report as DIR/results.md, its pictures under DIR/results/",
    )
    args = parser.parse_args(argv)
    report = write_report(args.demo_dir, args.cases)
    print(report)
    if args.publish is not None:
        print(publish_report(report, args.publish))


if __name__ == "__main__":
    main()
