"""Per-stage costs of building a sample, and the bare decode floor (used by :mod:`benchmarks.data`).

The stage pass runs the real :class:`~datagen.sample_builder.SampleBuilder` over the job's plan,
with its reader, augmentation and recipes wrapped in timers. The reader wrapper also logs which
frames and masks each sample's successful attempt decoded; :func:`measure_floor` decodes exactly
those again through the reader alone, so the floor and the pipeline do the same decoding work.
Samples are streamed: one sample (and its clips) in memory at a time.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import webdataset as wds

from contracts.schema import encode_sample
from contracts.tasks import TASKS
from datagen.augment import AugmentConfig, ClipAugment
from datagen.plan import SamplePlan, make_plan
from datagen.readers import open_reader
from datagen.recipes import Recipe, SkipSample, build_recipes
from datagen.recipes.base import RecipeOutput
from datagen.record import Clip, Reader, VideoRecord
from datagen.sample_builder import SampleBuilder
from datagen.shard_task import build_config, reader_args

# ("frames", video_id, annotated indices) or ("mask", video_id, object_id, annotated index)
DecodeItem = tuple[Any, ...]
# Stages on the path of a job (in order); totals are their sum for each codec.
BUILD_STAGES = ("load", "decode", "resize_crop", "augment", "recipe", "other")


class Timers:
    """Seconds accumulated per stage name."""

    def __init__(self) -> None:
        self.s: dict[str, float] = defaultdict(float)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.s[stage] += time.perf_counter() - t0


def open_job_reader(cfg: dict[str, Any]) -> Reader:
    name, options = reader_args(cfg["source"])
    return open_reader(name, **options)


def recording_load(
    load: Callable[[str], VideoRecord], timers: Timers, log: list[DecodeItem]
) -> Callable[[str], VideoRecord]:
    """``load`` whose records time (``decode``) and log every frame and mask they decode."""

    def timed_frames(rec: VideoRecord, indices: Any) -> Iterator[np.ndarray]:
        indices = tuple(int(i) for i in indices)
        log.append(("frames", rec.video_id, indices))
        it = iter(rec.frames_fn(indices))
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                return
            finally:
                timers.s["decode"] += time.perf_counter() - t0
            yield frame

    def timed_mask(rec: VideoRecord, track: Any, i: int) -> np.ndarray | None:
        log.append(("mask", rec.video_id, track.object_id, int(i)))
        with timers.time("decode"):
            return track.mask_fn(i)

    def wrapped(video_id: str) -> VideoRecord:
        with timers.time("load"):
            rec = load(video_id)
        objects = tuple(
            dataclasses.replace(o, mask_fn=lambda i, o=o: timed_mask(rec, o, i))
            for o in rec.objects
        )
        return dataclasses.replace(
            rec, frames_fn=lambda idx: timed_frames(rec, idx), objects=objects
        )

    return wrapped


class TimedRecipe:
    """A recipe whose calls are timed under ``recipe`` (same name, task and needs)."""

    def __init__(self, recipe: Recipe, timers: Timers) -> None:
        self.recipe, self.timers, self.name = recipe, timers, recipe.name
        self.task, self.needs = recipe.task, recipe.needs

    def __call__(
        self, clip: Clip, rng: np.random.Generator, *, partner: Clip | None = None
    ) -> RecipeOutput:
        with self.timers.time("recipe"):
            return self.recipe(clip, rng, partner=partner)


class TimedBuilder(SampleBuilder):
    """The real builder, timing ``clip`` and ``augment`` and keeping the last attempt's clips."""

    def __init__(self, *, timers: Timers, log: list[DecodeItem], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timers, self.log = timers, log
        self.augmented: list[Clip] = []
        augment = self.augment

        def timed_augment(clip: Clip, rng: np.random.Generator) -> Clip:
            with timers.time("augment"):
                out = augment(clip, rng)
            self.augmented.append(out)
            return out

        self.augment = timed_augment  # type: ignore[assignment]

    def _attempt(self, plan: SamplePlan, attempt: int, rng: Any, video_id: str, partner_id: Any):
        self.log.clear()  # keep only what the successful attempt decoded
        self.augmented.clear()
        return super()._attempt(plan, attempt, rng, video_id, partner_id)

    def _clip(self, record: VideoRecord, rng: Any, main: str | None, *, all_masks: bool) -> Clip:
        with self.timers.time("clip"):
            return super()._clip(record, rng, main, all_masks=all_masks)


def time_every_recipe(
    recipes: dict[str, Recipe], clips: list[Clip], seed: list[int], out: dict[str, list]
) -> None:
    """Apply every recipe to the sample's augmented clip; append seconds (or skips) per recipe."""
    main = clips[0]
    partner = clips[1] if len(clips) > 1 else main  # removal: paste the clip's own object
    for task, recipe in recipes.items():
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        try:
            recipe(main, rng, partner=partner)
        except SkipSample:
            out[f"{task}:skips"].append(1)
            continue
        out[task].append(time.perf_counter() - t0)


def one_pass(cfg: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Build and encode every planned sample once; per-stage seconds per sample and bytes."""
    cv2.setNumThreads(1)  # as in a shard task: one core per task
    reader = open_job_reader(cfg)
    video_ids = reader.list_videos()
    timers, log = Timers(), []
    recipes = build_recipes(cfg.get("recipes") or {})
    builder = TimedBuilder(
        timers=timers,
        log=log,
        load=recording_load(reader.load, timers, log),
        video_ids=video_ids,
        recipes={t: TimedRecipe(r, timers) for t, r in recipes.items()},
        augment=ClipAugment(AugmentConfig(**(cfg.get("augment") or {}))),
        cfg=build_config(cfg),
    )
    plans = make_plan(
        video_ids,
        num_samples=int(cfg["num_samples"]),
        samples_per_shard=int(cfg["samples_per_shard"]),
        mix=cfg["mix"],
        tasks=cfg.get("tasks"),
        seed=int(cfg["seed"]),
        partner_tasks={t for t, r in recipes.items() if r.needs.partner},
    )
    enc = cfg.get("encode") or {}
    crf, preset = int(enc.get("crf", 18)), str(enc.get("preset", "medium"))
    out_dir.mkdir(parents=True, exist_ok=True)
    decode_log: list[list[DecodeItem]] = []
    per_recipe: dict[str, list] = defaultdict(list)
    failed = retries = 0
    files = {c: open(out_dir / f"{c}.tar", "wb") for c in ("h264", "lossless")}  # noqa: SIM115
    writers = {c: wds.TarWriter(f, mtime=0.0) for c, f in files.items()}
    try:
        for plan in (p for shard in plans for p in shard.samples):
            with timers.time("build"):
                result = builder.build(plan)
            retries += len(result.errors) + len(result.skips)
            if result.sample is None:
                failed += 1
                continue
            decode_log.append(list(log))
            seed = [int(cfg["seed"]), plan.shard, plan.index, 99]
            time_every_recipe(recipes, builder.augmented, seed, per_recipe)
            for codec in writers:
                with timers.time(f"encode_{codec}"):
                    d = encode_sample(result.sample, codec=codec, crf=crf, preset=preset)
                with timers.time(f"write_{codec}"):
                    writers[codec].write(d)
    finally:
        for codec, w in writers.items():
            with timers.time(f"write_{codec}"):
                w.close()
                files[codec].flush()
                os.fsync(files[codec].fileno())
                files[codec].close()
    n = len(decode_log)
    if n == 0:
        raise RuntimeError(f"stage pass: no sample could be built from {cfg['source']}")
    s = dict(timers.s)
    s["resize_crop"] = s.get("clip", 0.0) - s.get("decode", 0.0)
    s["other"] = s["build"] - sum(s.get(k, 0.0) for k in ("load", "clip", "augment", "recipe"))
    return {
        "per_sample": {k: v / n for k, v in s.items()},
        "recipes": {t: (float(np.mean(v)) if v else None) for t, v in per_recipe.items()},
        "recipe_calls": {t: len(v) for t, v in per_recipe.items()},
        "recipe_names": {t: r.name for t, r in recipes.items()},
        "bytes": {c: (out_dir / f"{c}.tar").stat().st_size / n for c in writers},
        "samples": n,
        "failed": failed,
        "retries": retries,
        "decode_log": decode_log,
    }


def _entry(s: float, total: float) -> dict[str, Any]:
    return {
        "s_per_sample": round(s, 6),
        "samples_per_s": round(1 / s, 2) if s > 0 else None,
        "share": round(s / total, 4),
    }


def measure_stages(cfg: dict[str, Any], out_dir: Path, *, reps: int) -> dict[str, Any]:
    """``reps`` stage passes; medians of per-sample seconds per stage, shares of the job's total.

    Returns:
        ``{"stages", "recipes", "bytes_per_sample", "stage_pass", "decode_log"}``; ``stages``
        lists the build stages plus ``encode_<codec>``, ``write_<codec>`` and ``total_<codec>``,
        each with ``s_per_sample``, ``samples_per_s`` and ``share`` (of the H.264 job's total;
        lossless stages: of the lossless job's; build stages also give ``share_lossless``).
    """
    passes = [one_pass(cfg, out_dir / f"rep{r}") for r in range(reps)]

    def med(key: str) -> float:
        return statistics.median(p["per_sample"].get(key, 0.0) for p in passes)

    build = {k: med(k) for k in BUILD_STAGES}
    stages: dict[str, Any] = {}
    totals: dict[str, float] = {}
    for codec in ("h264", "lossless"):
        enc, wr = med(f"encode_{codec}"), med(f"write_{codec}")
        totals[codec] = sum(build.values()) + enc + wr
        stages[f"encode_{codec}"] = _entry(enc, totals[codec])
        stages[f"write_{codec}"] = _entry(wr, totals[codec])
    build_entries = {}
    for k, v in build.items():
        build_entries[k] = _entry(v, totals["h264"])
        build_entries[k]["share_lossless"] = round(v / totals["lossless"], 4)
    stages = {**build_entries, **stages}
    stages["total_h264"] = _entry(totals["h264"], totals["h264"])
    stages["total_lossless"] = _entry(totals["lossless"], totals["lossless"])
    recipes = {}
    for task in TASKS:
        times = [p["recipes"][task] for p in passes if p["recipes"].get(task)]
        s = statistics.median(times) if times else None
        recipes[task] = {
            "recipe": passes[0]["recipe_names"][task],
            "s_per_call": round(s, 6) if s else None,
            "samples_per_s": round(1 / s, 2) if s else None,
            "calls": passes[0]["recipe_calls"].get(task, 0),
            "skips": passes[0]["recipe_calls"].get(f"{task}:skips", 0),
        }
    h264 = statistics.median(p["bytes"]["h264"] for p in passes)
    lossless = statistics.median(p["bytes"]["lossless"] for p in passes)
    return {
        "stages": stages,
        "recipes": recipes,
        "bytes_per_sample": {
            "h264": round(h264),
            "lossless": round(lossless),
            "lossless_over_h264": round(lossless / h264, 2),
        },
        "stage_pass": {k: passes[0][k] for k in ("samples", "failed", "retries")},
        "decode_log": passes[0]["decode_log"],
    }


def measure_floor(
    cfg: dict[str, Any], decode_log: list[list[DecodeItem]], *, reps: int
) -> dict[str, Any]:
    """Decode the logged frames and masks through the reader alone; samples/s, median of reps.

    Records are loaded once, outside the timer (their index cost is the ``load`` stage).
    """
    reader = open_job_reader(cfg)
    records = {item[1]: None for sample in decode_log for item in sample}
    records = {vid: reader.load(vid) for vid in records}
    tracks = {(v, o.object_id): o for v, r in records.items() for o in r.objects}
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for sample in decode_log:
            for item in sample:
                if item[0] == "frames":
                    for _frame in records[item[1]].frames(item[2]):
                        pass
                else:
                    tracks[(item[1], item[2])].mask(item[3])
        rates.append(len(decode_log) / (time.perf_counter() - t0))
    med = statistics.median(rates)
    return {
        "samples_per_s": round(med, 3),
        "reps_samples_per_s": [round(r, 3) for r in rates],
        "s_per_sample": round(1 / med, 5),
        "samples": len(decode_log),
        "frames_per_sample": round(
            sum(len(i[2]) for s in decode_log for i in s if i[0] == "frames") / len(decode_log), 2
        ),
        # an mp4 is decoded from its start up to the last frame a clip needs
        "frames_decoded_from_start_per_sample": round(
            sum(max(i[2]) + 1 for s in decode_log for i in s if i[0] == "frames" and i[2])
            / len(decode_log),
            2,
        ),
        "masks_per_sample": round(
            sum(1 for s in decode_log for i in s if i[0] == "mask") / len(decode_log), 2
        ),
    }
