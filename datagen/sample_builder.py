"""Build one training pair from its plan: load, cut clips, augment, apply the recipe, label.

A planned sample that cannot be built (bad video, instance absent from the first frame, area out
of the filters, video too short) is retried with a fresh attempt generator on another video drawn
from the dataset, up to ``max_attempts`` times; every bad video and skip reason is reported back
so the job can log and count it. Nothing here raises for one bad video: a record with absurd
numbers (non-finite or huge fps, negative frame indices) is a bad video, and with an ``encode``
function the sample is encoded inside the same per-attempt handling, so an encoder failure is one
more counted error, never a lost shard.

Loaded records (indices and lazy callables, no pixels) are kept in a small LRU cache
(``record_cache`` entries, 8 by default), so retries and later samples on the same video do not
load it again; a video whose ``load`` failed is remembered too and fails again with the same
reason. Records decode lazily and deterministically, so caching changes no sample.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np

from contracts.schema import MAX_FPS, SCHEMA_VERSION, Sample
from datagen.augment import ClipAugment
from datagen.clips import sample_clip
from datagen.plan import SamplePlan, sample_rng
from datagen.prompts import category_prompt
from datagen.recipes import Recipe, SkipSample
from datagen.record import BadVideo, Clip, VideoRecord

Encoder = Callable[[Sample], dict[str, bytes | str]]


@dataclass(frozen=True, kw_only=True)
class BuildConfig:
    """Per-sample settings (``clip.*``, ``filters.*``, ``seed`` ... in conf).

    Attributes:
        frames: clip length T.
        size: output ``(H, W)``.
        strides: candidate strides in annotated frames (1 = the annotated rate).
        crop: ``"random"`` or ``"center"``.
        min_area, max_area: bounds on the edited instance's area on the first frame, as a
            fraction of the frame.
        max_attempts: attempts per sample before it is given up (and counted).
        seed: the job seed.
        prompt_template: template of category prompts.
    """

    frames: int = 16
    size: tuple[int, int] = (256, 256)
    strides: tuple[int, ...] = (1,)
    crop: str = "random"
    min_area: float = 0.005
    max_area: float = 0.6
    max_attempts: int = 8
    seed: int = 0
    prompt_template: str = "a video of {}"


@dataclass
class BuildResult:
    """The sample (``None`` when every attempt failed), bad videos and skip reasons met.

    Attributes:
        sample: the built sample.
        encoded: its encoded WebDataset dict, when :meth:`SampleBuilder.build` got ``encode``.
        errors: ``{"video", "reason", "sample", "kind"}`` per failed attempt; ``kind`` is
            ``"bad_video"``, ``"build_error"`` (unexpected exception) or ``"encode_error"``.
        skips: ``{"video", "reason", "sample", "kind"}`` per skipped attempt (``kind``: a key
            of :data:`datagen.record.SKIP_KINDS`).
    """

    sample: Sample | None
    encoded: dict[str, bytes | str] | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    skips: list[dict[str, str]] = field(default_factory=list)


class SampleBuilder:
    """Turns :class:`SamplePlan` entries into :class:`Sample` objects.

    Args:
        load: ``load(video_id) -> VideoRecord`` (a reader's ``load``), may raise ``BadVideo``.
        video_ids: every video of the dataset (retries draw from it).
        recipes: task -> recipe (:func:`datagen.recipes.build_recipes`); each recipe's ``needs``
            say what to gather for it: a partner clip, every instance's masks, area filters.
        augment: the clip augmentation.
        cfg: per-sample settings.
        record_cache: how many loaded records (or load failures) to keep, least recently used
            dropped first; 0 disables the cache.
    """

    def __init__(
        self,
        *,
        load: Callable[[str], VideoRecord],
        video_ids: Sequence[str],
        recipes: Mapping[str, Recipe],
        augment: ClipAugment,
        cfg: BuildConfig,
        record_cache: int = 8,
    ) -> None:
        self.load, self.video_ids = load, sorted(video_ids)
        self.recipes, self.augment, self.cfg = recipes, augment, cfg
        self.record_cache = int(record_cache)
        self._records: OrderedDict[str, VideoRecord | BadVideo] = OrderedDict()

    def record(self, video_id: str) -> VideoRecord:
        """``load(video_id)`` through the LRU cache of records (and of load failures).

        Raises:
            BadVideo: the video cannot be loaded (also when that is remembered from before).
        """
        if video_id in self._records:
            self._records.move_to_end(video_id)
            cached = self._records[video_id]
        else:
            try:
                cached = self.load(video_id)
            except BadVideo as e:
                cached = e
            if self.record_cache > 0:
                self._records[video_id] = cached
                while len(self._records) > self.record_cache:
                    self._records.popitem(last=False)
        if isinstance(cached, BadVideo):
            raise BadVideo(cached.video_id, cached.reason)
        return cached

    def build(self, plan: SamplePlan, encode: Encoder | None = None) -> BuildResult:
        """Build ``plan``'s sample, retrying on bad videos, skips and encoder failures.

        Args:
            plan: the planned sample.
            encode: optional ``encode(sample) -> dict`` (e.g. :func:`contracts.schema.encode_sample`
                with the job's codec); its failures are recorded like bad videos.
        """
        result = BuildResult(None)
        for attempt in range(self.cfg.max_attempts):
            rng = sample_rng(self.cfg.seed, plan.shard, plan.index, attempt)
            video_id, partner_id = plan.video_id, plan.partner_id
            if attempt > 0:
                video_id = self.video_ids[int(rng.integers(len(self.video_ids)))]
                if partner_id is not None:
                    partner_id = self.video_ids[int(rng.integers(len(self.video_ids)))]
            try:
                sample = self._attempt(plan, attempt, rng, video_id, partner_id)
            except BadVideo as e:
                result.errors.append(_entry(e.video_id, e.reason, plan.key, "bad_video"))
                continue
            except SkipSample as e:
                result.skips.append(_entry(video_id, str(e), plan.key, e.kind))
                continue
            except Exception as e:  # one video must never kill the job: log it
                reason = f"{type(e).__name__}: {e}"
                result.errors.append(_entry(video_id, reason, plan.key, "build_error"))
                continue
            try:
                result.encoded = encode(sample) if encode is not None else None
            except Exception as e:  # e.g. a value the encoder cannot represent
                reason = f"cannot encode: {type(e).__name__}: {e}"
                video = str(sample.meta["video_id"])
                result.errors.append(_entry(video, reason, plan.key, "encode_error"))
                continue
            result.sample = sample
            return result
        return result

    def _attempt(
        self,
        plan: SamplePlan,
        attempt: int,
        rng: np.random.Generator,
        video_id: str,
        partner_id: str | None,
    ) -> Sample:
        c = self.cfg
        recipe = self.recipes.get(plan.task)
        if recipe is None:
            raise ValueError(f"no recipe builds task {plan.task!r} (bound: {sorted(self.recipes)})")
        needs = recipe.needs
        record = self.record(video_id)
        check_record_numbers(record)
        main = _pick_object(record, rng)
        clip = self._clip(record, rng, main, all_masks=needs.all_masks)
        partner = None
        if needs.partner:
            partner = self._partner_clip(record, main, partner_id, rng, recipe=recipe.name)
        if needs.instance == "partner" and partner is not None:
            self._check_area(partner, partner.object_ids[0])
        elif needs.instance == "clip":
            self._check_area(clip, main)
        aug_seed = int(rng.integers(2**31))
        clip = self.augment(clip, np.random.default_rng(aug_seed))
        if partner is not None:
            partner = self.augment(partner, rng)
        out = recipe(clip, rng, partner=partner)
        if needs.recheck_area and out.mask[0].mean() < c.min_area:
            raise SkipSample(f"{recipe.name}: pasted object mostly left the first frame")
        params: dict[str, Any] = dict(out.params)
        params.update(attempt=attempt, augment_seed=aug_seed)
        if partner is not None:
            params["partner_frame_indices"] = partner.frame_indices
        prompt = needs.prompt
        if prompt is None:  # the picked instance's category (video A's, also for a paste)
            categories = [clip.categories.get(main)] if main is not None else []
            prompt = category_prompt(categories, template=c.prompt_template)
        meta = {
            "task": plan.task,
            "recipe": recipe.name,
            "prompt": prompt,
            "source": record.source,
            "video_id": record.video_id,
            "object_ids": out.object_ids,
            "frame_indices": clip.frame_indices,
            "fps": clip.fps,
            "seed": [c.seed, plan.shard, plan.index, attempt],
            "schema_version": SCHEMA_VERSION,
            "params": params,
        }
        return Sample(plan.key, out.sce, out.first, out.target, out.mask, meta)

    def _clip(
        self, record: VideoRecord, rng: np.random.Generator, main: str | None, *, all_masks: bool
    ) -> Clip:
        c = self.cfg
        return sample_clip(
            record,
            rng,
            frames=c.frames,
            size=c.size,
            strides=c.strides,
            crop=c.crop,
            anchor_object=main,
            object_ids=[main] if main is not None else [],
            mask_objects=None if all_masks else ([main] if main is not None else []),
        )

    def _partner_clip(
        self,
        record: VideoRecord,
        main: str | None,
        partner_id: str | None,
        rng: np.random.Generator,
        *,
        recipe: str,
    ) -> Clip:
        """Video B's clip for a recipe that needs a partner (copy-and-paste).

        Without a planned partner video (one-video datasets, or a task the plan gives none),
        video B is video A itself and its clip follows another object.
        """
        if partner_id is None or partner_id == record.video_id:
            others = [o for o in record.objects if o.object_id != main]
            if not others:
                raise SkipSample(
                    f"{recipe}: one-video dataset needs a second object to paste", "no_objects"
                )
            partner_record = record
            obj = others[int(rng.integers(len(others)))].object_id
        else:
            partner_record = self.record(partner_id)
            check_record_numbers(partner_record)
            obj = _pick_object(partner_record, rng)
            if obj is None:
                raise SkipSample(f"partner video {partner_id!r} has no objects", "no_objects")
        return self._clip(partner_record, rng, obj, all_masks=False)

    def _check_area(self, clip: Clip, object_id: str | None) -> None:
        if object_id is None:
            raise SkipSample("video has no objects", "no_objects")
        area = float(clip.masks[object_id][0].mean())
        if not self.cfg.min_area <= area <= self.cfg.max_area:
            raise SkipSample(
                f"object {object_id!r} covers {area:.4f} of the first frame, outside "
                f"[{self.cfg.min_area}, {self.cfg.max_area}]",
                "area_out_of_range",
            )


def _pick_object(record: VideoRecord, rng: np.random.Generator) -> str | None:
    """A random object with at least one present frame (``None`` if the video has none)."""
    usable = [o.object_id for o in record.objects if o.present]
    return usable[int(rng.integers(len(usable)))] if usable else None


def check_record_numbers(record: VideoRecord) -> None:
    """Refuse a record whose numbers would poison a sample or the encoder.

    Raises:
        BadVideo: ``fps`` is not ``None`` or a finite number in (0, :data:`MAX_FPS`]; the size
            is not positive integers; frame indices are not non-negative integers; annotated or
            present indices fall outside the record.
    """
    vid = record.video_id
    fps = record.fps
    if fps is not None and (
        isinstance(fps, bool)
        or not isinstance(fps, Real)
        or not math.isfinite(fps)
        or not 0 < fps <= MAX_FPS
    ):
        raise BadVideo(vid, f"field 'fps' is {fps!r}, expected a finite number in (0, {MAX_FPS}]")
    for name in ("width", "height"):
        value = getattr(record, name)
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise BadVideo(vid, f"field {name!r} is {value!r}, expected a positive integer")
    if not all(_natural(i) for i in record.frame_indices):
        raise BadVideo(vid, "field 'frame_indices' must hold non-negative integers")
    n = record.num_frames
    if not all(_natural(i) and i < n for i in record.annotated):
        raise BadVideo(vid, f"field 'annotated' must hold frame numbers in [0, {n})")
    for obj in record.objects:
        if not all(_natural(i) and i < n for i in obj.present):
            raise BadVideo(vid, f"object {obj.object_id}: 'present' must hold numbers in [0, {n})")


def _natural(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 0


def _entry(video: str, reason: str, key: str, kind: str) -> dict[str, str]:
    return {"video": video, "reason": reason, "sample": key, "kind": kind}
