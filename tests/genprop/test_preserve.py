"""Keeping the unedited region (genprop.inference.preserve) and the sampling defaults an export
carries."""

from __future__ import annotations

import argparse
import dataclasses
import importlib

import numpy as np
import pytest
import torch
from genprop_helpers import tiny_genprop_model

import genprop.inference.sampler as sampler_module
from contracts.tasks import task_index
from genprop import GenPropModel
from genprop.cli.usage import UsageError, add_preserve_flags, preserve_from_args
from genprop.configs import GenPropConfig, SamplingConfig
from genprop.inference.preserve import (
    blend_known,
    change_mask,
    fixed_region_clips,
    link_to_first_frame,
    soft_edit_mask,
)
from genprop.inference.propagate import propagate
from genprop.inference.sampler import latent_edit_mask, sample_latents
from genprop.sampling_options import PreserveConfig

# ``genprop.inference.propagate`` the attribute is the function; the module is needed for
# monkeypatch.
propagate_module = importlib.import_module("genprop.inference.propagate")


def test_soft_edit_mask_dilates_blurs_and_stays_in_range() -> None:
    prob = torch.zeros(1, 2, 9, 9)
    prob[:, :, 4, 4] = 1.0
    plain = soft_edit_mask(prob, dilate=0, blur=0.0)
    assert torch.equal(plain, prob)
    dilated = soft_edit_mask(prob, dilate=1, blur=0.0)
    assert dilated[0, 0, 3:6, 3:6].eq(1).all() and dilated.sum() == 2 * 9
    soft = soft_edit_mask(prob, dilate=1, blur=1.0)
    assert soft.min() >= 0 and soft.max() <= 1
    assert 0 < soft[0, 0, 4, 1] < soft[0, 0, 4, 3]  # a falling seam, not a step
    assert soft[0, 0, 0, 8] < 0.05  # far from the edit the input is kept


def test_blend_known_keeps_frame_zero_and_mixes_the_rest() -> None:
    x, known = torch.ones(1, 3, 2, 4, 4), torch.zeros(1, 3, 2, 4, 4)
    edit = torch.zeros(1, 3, 4, 4)
    edit[:, :, :2] = 1.0
    out = blend_known(x, known, edit)
    assert out[:, 0].eq(1).all()  # the (edited) first frame is never replaced
    assert out[:, 1:, :, :2].eq(1).all() and out[:, 1:, :, 2:].eq(0).all()


def _force_mpd(model: GenPropModel, monkeypatch: pytest.MonkeyPatch, logit: float) -> None:
    """Make the model's MPD predict a constant edit logit (a mock of the mask head only)."""
    forward = model.forward

    def fixed(*args, **kwargs):
        out = forward(*args, **kwargs)
        if out.mask_logits is not None:
            out.mask_logits = torch.full_like(out.mask_logits, logit)
        return out

    monkeypatch.setattr(model, "forward", fixed)


def _sample(model: GenPropModel, preserve: PreserveConfig | None) -> tuple[torch.Tensor, ...]:
    cfg = model.config
    gen = torch.Generator().manual_seed(3)
    video = torch.rand(1, cfg.num_frames, 3, cfg.height, cfg.width, generator=gen) * 2 - 1
    content = model.codec.encode(video)
    first = model.encode_first_frame(video[:, 0], cfg.num_frames)
    x, _ = sample_latents(
        model,
        first,
        content=content,
        task=torch.tensor([0]),
        steps=3,
        generator=torch.Generator().manual_seed(0),
        preserve=preserve,
    )
    return x, content


def test_latent_preservation_returns_the_content_where_nothing_is_edited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_genprop_model().eval()
    _force_mpd(model, monkeypatch, logit=-40.0)  # "nothing edited"
    x, content = _sample(model, PreserveConfig(mode="latent", dilate=0, blur=0.0))
    assert torch.allclose(x[:, 1:], content[:, 1:], atol=1e-6)
    plain, _ = _sample(model, None)
    assert not torch.allclose(plain[:, 1:], content[:, 1:], atol=1e-2)


def test_latent_preservation_is_the_plain_model_where_everything_is_edited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_genprop_model().eval()
    _force_mpd(model, monkeypatch, logit=40.0)
    kept, _ = _sample(model, PreserveConfig(mode="latent", dilate=0, blur=0.0))
    plain, _ = _sample(model, PreserveConfig(mode="off"))
    assert torch.allclose(kept, plain, atol=1e-5)


def test_latent_change_preservation_holds_what_the_model_reproduces() -> None:
    """Latent "change": cells whose clean estimate stays within the threshold of the content are
    held to it (all of them with a huge threshold); with a tiny one nothing is held."""
    model = tiny_genprop_model().eval()
    held, content = _sample(
        model, PreserveConfig(mode="latent", source="change", threshold=99.0, dilate=0, blur=0.0)
    )
    assert torch.allclose(held[:, 1:], content[:, 1:], atol=1e-6)
    free, _ = _sample(
        model,
        PreserveConfig(
            mode="latent", source="change", threshold=1e-6, opening=0, dilate=0, blur=0.0
        ),
    )
    plain, _ = _sample(model, PreserveConfig(mode="off"))
    assert torch.allclose(free, plain, atol=1e-5)


def _video(cfg: GenPropConfig, frames: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (frames, cfg.height, cfg.width, 3), dtype=np.uint8)


def test_pixel_preservation_keeps_the_input_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_genprop_model().eval()
    _force_mpd(model, monkeypatch, logit=-40.0)
    video = _video(model.config)
    edited = 255 - video[0]
    out = propagate(model, video, edited, "removal", steps=2, preserve=PreserveConfig(mode="pixel"))
    assert np.array_equal(out.video[0], edited)
    assert np.array_equal(out.video[1:], video[1:])


def test_change_mask_keeps_real_edits_and_drops_specks() -> None:
    video = torch.zeros(1, 2, 3, 16, 16)
    result = video.clone()
    result[0, 1, 0, 4:10, 4:10] = 0.8  # a 6x6 edit
    result[0, 1, 1, 13, 2] = 0.9  # one speck of regeneration noise
    result[0, 1, 2, 0:4, 12:16] = 0.05  # a change below the threshold
    m = change_mask(result, video, threshold=0.1, opening=1)
    assert m.shape == (1, 2, 16, 16)
    assert m[0, 1, 4:10, 4:10].eq(1).all()
    assert m.sum() == 36  # neither the speck nor the faint change
    assert change_mask(result, video, threshold=0.1, opening=0).sum() == 37


def test_change_preservation_never_undoes_the_models_edit(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the change mask, every output pixel is either the model's or within the threshold."""
    model = tiny_genprop_model().eval()
    video = _video(model.config)
    edited = 255 - video[0]
    plain = propagate(model, video, edited, "removal", steps=2)
    kept = propagate(
        model,
        video,
        edited,
        "removal",
        steps=2,
        preserve=PreserveConfig(
            mode="pixel", source="change", threshold=0.199, opening=0, dilate=0, blur=0
        ),
    )
    far = np.abs(plain.video.astype(int) - video.astype(int)).max(-1) > 0.199 * 255
    assert np.array_equal(kept.video[far], plain.video[far])
    assert np.array_equal(kept.video[1:][~far[1:]], video[1:][~far[1:]])
    assert np.array_equal(kept.video[0], edited)


def test_linking_follows_the_first_frames_edit_and_drops_unlinked_changes() -> None:
    changed = torch.zeros(1, 5, 16, 16)
    changed[0, 0, 2:5, 2:5] = 1  # the user's edit in the first frame
    changed[0, 1, 3:6, 4:7] = 1  # the edit moved: overlaps the first frame's
    changed[0, 1, 12:14, 12:14] = 1  # regeneration noise far from any edit
    changed[0, 2, 5:8, 7:10] = 1  # moved on, one cell from frame 1's region (no overlap)
    # frame 3: nothing changed (the edited object is hidden)
    changed[0, 4, 8:10, 11:13] = 1  # reappears two cells further on: found by the grown search
    changed[0, 4, 0:2, 14:16] = 1  # noise
    kept = link_to_first_frame(changed, radius=1)
    expected = changed.clone()
    expected[0, 1, 12:14, 12:14] = 0
    expected[0, 4, 0:2, 14:16] = 0
    assert torch.equal(kept, expected)
    assert kept.dtype == changed.dtype
    # Overlap-or-gap is what links: with the gap in frame 2 the edit is lost from there on.
    far = changed.clone()
    far[0, 2] = 0
    far[0, 2, 5:8, 8:11] = 1  # two cells from frame 1's region
    lost = link_to_first_frame(far, radius=1)
    assert lost[0, 2].sum() == 0 and lost[0, 1, 3:6, 4:7].eq(1).all()
    with pytest.raises(ValueError, match="link_radius"):
        link_to_first_frame(changed, radius=0)


def test_linked_change_preservation_is_the_linked_composite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The output keeps the model's pixels on the changes linked to the first frame's edit only."""
    model = tiny_genprop_model().eval()
    video = _video(model.config)
    edited = video[0].copy()
    edited[4:12, 4:12] = 255 - edited[4:12, 4:12]  # the user's edit: cells 1..2 of the 4x4 codec
    real = sampler_module.sample_latents

    def model_output(*args, **kwargs):  # the input, changed near the edit and far from it
        _, logits = real(*args, **kwargs)
        latents = kwargs["content"].clone()
        latents[:, 1:, :, 2:4, 2:4] += 2.0  # the edit moved by one cell: linked
        latents[:, 1:, :, 6:8, 6:8] -= 2.0  # regenerated texture far from any edit
        return latents, logits

    monkeypatch.setattr(propagate_module, "sample_latents", model_output)
    plain = propagate(model, video, edited, "removal", steps=1)
    cfg = PreserveConfig(
        mode="pixel", source="change", threshold=0.1, opening=0, dilate=0, blur=0, link_radius=1
    )
    kept = propagate(model, video, edited, "removal", steps=1, preserve=cfg)
    changed = np.abs(plain.video.astype(int) - video.astype(int)).max(-1) > 0.1 * 255
    near, far = np.zeros_like(changed), np.zeros_like(changed)
    near[1:, 8:16, 8:16] = far[1:, 24:32, 24:32] = True
    assert changed[near].mean() > 0.5 and changed[far].mean() > 0.5
    assert not changed[1:][~(near | far)[1:]].any()
    linked = changed & near
    assert np.array_equal(kept.video[linked], plain.video[linked])  # the linked change: the model's
    assert np.array_equal(kept.video[1:][~linked[1:]], video[1:][~linked[1:]])  # the rest: input
    assert np.array_equal(kept.video[0], edited)
    unlinked = dataclasses.replace(cfg, link_radius=0)
    both = propagate(model, video, edited, "removal", steps=1, preserve=unlinked)
    assert np.array_equal(both.video[changed & far], plain.video[changed & far])  # noise stays


def test_fixed_region_tasks_hold_the_first_frames_region_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Outpainting: the band edited in frame 0 is the model's in every frame, the rest the input."""
    model = tiny_genprop_model().eval()
    video = _video(model.config)
    edited = video[0].copy()
    edited[:, :8] = 255 - edited[:, :8]  # the canvas band the user filled in frame 0
    real = sampler_module.sample_latents

    def model_output(*args, **kwargs):  # the input, changed everywhere (regeneration noise)
        _, logits = real(*args, **kwargs)
        return kwargs["content"] + 1.5, logits

    monkeypatch.setattr(propagate_module, "sample_latents", model_output)
    cfg = PreserveConfig(
        mode="pixel",
        source="change",
        threshold=0.1,
        link_radius=1,
        dilate=2,
        blur=1.0,
        fixed_region_tasks=["outpainting"],
    )
    plain = propagate(model, video, edited, "outpainting", steps=1)
    held = propagate(model, video, edited, "outpainting", steps=1, preserve=cfg)
    assert np.array_equal(held.video[:, :, :8], plain.video[:, :, :8])  # hard edge: no blur
    assert np.array_equal(held.video[1:, :, 8:], video[1:, :, 8:])
    assert not np.array_equal(plain.video[1:, :, 8:], video[1:, :, 8:])
    # Another task with the same settings follows the (linked) change instead: all of it here.
    other = propagate(model, video, edited, "removal", steps=1, preserve=cfg)
    assert not np.array_equal(other.video[1:, :, 8:], video[1:, :, 8:])
    # The setting travels with an export.
    model.config.sampling = SamplingConfig(preserve=cfg)
    model.save_pretrained(tmp_path / "export")
    assert GenPropModel.from_pretrained(tmp_path / "export").config.sampling.preserve == cfg


def test_latent_edit_mask_holds_frame_zero_for_fixed_clips() -> None:
    cfg = PreserveConfig(
        mode="latent",
        source="change",
        threshold=0.5,
        opening=0,
        dilate=1,
        blur=1.0,
        fixed_region_tasks=["outpainting"],
    )
    content = torch.zeros(2, 3, 4, 8, 8)
    estimate = content.clone()
    estimate[:, 0, :, :, :2] = 3.0  # frame 0: the band
    estimate[:, 1:, :, 4:6, 4:6] = 3.0  # later frames: a change elsewhere
    logits = torch.zeros(2, 3, 8, 8)
    task = torch.tensor([task_index("outpainting"), task_index("removal")])
    edit = latent_edit_mask(cfg, logits, estimate, content, fixed_region_clips(cfg, task))
    band = torch.zeros(8, 8)
    band[:, :2] = 1
    assert torch.equal(edit[0], band.expand(3, 8, 8))  # held and hard
    # The other clip follows its own change, softly, and frame 0's band is not held there.
    assert edit[1, 1, 4, 4] > 0.5 and edit[1, 1, :, :2].max() < 0.1
    assert ((edit[1] > 0) & (edit[1] < 1)).any()


def test_preserve_flags_set_the_link_radius() -> None:
    parser = argparse.ArgumentParser()
    add_preserve_flags(parser)
    default = PreserveConfig(mode="pixel", source="change")
    cfg = preserve_from_args(parser.parse_args(["--preserve-link-radius", "2"]), default)
    assert cfg == PreserveConfig(mode="pixel", source="change", link_radius=2)
    assert preserve_from_args(parser.parse_args([]), default) is None
    fixed = parser.parse_args(["--preserve-fixed-region-tasks", "outpainting,edit"])
    assert preserve_from_args(fixed, default).fixed_region_tasks == ["outpainting", "edit"]
    held = dataclasses.replace(default, fixed_region_tasks=["outpainting"])
    none = parser.parse_args(["--preserve-fixed-region-tasks", "none"])
    assert preserve_from_args(none, held).fixed_region_tasks == []
    bad = parser.parse_args(["--preserve-fixed-region-tasks", "outpaint"])
    with pytest.raises(UsageError, match="--preserve-fixed-region-tasks: expected"):
        preserve_from_args(bad, default)
    args = parser.parse_args(["--preserve-source", "mpd", "--preserve-link-radius", "1"])
    with pytest.raises(UsageError, match="--preserve-link-radius: links"):
        preserve_from_args(args, default)


@pytest.mark.parametrize(
    "cfg, field",
    [
        (PreserveConfig(mode="latent", source="change", threshold=500.0), "preserve.threshold"),
        (PreserveConfig(mode="pixel", source="mask"), "preserve.source"),
        (PreserveConfig(mode="pixel", source="change", threshold=1.5), "preserve.threshold"),
        (PreserveConfig(mode="pixel", source="union", opening=-1), "preserve.opening"),
        (PreserveConfig(mode="pixel", source="change", link_radius=-1), "preserve.link_radius"),
        (PreserveConfig(mode="pixel", source="mpd", link_radius=1), "preserve.link_radius"),
        (
            PreserveConfig(mode="pixel", source="change", fixed_region_tasks=["outpaint"]),
            "preserve.fixed_region_tasks",
        ),
        (
            PreserveConfig(mode="pixel", source="mpd", fixed_region_tasks=["outpainting"]),
            "preserve.fixed_region_tasks",
        ),
    ],
)
def test_bad_preserve_options_are_refused_naming_the_field(cfg: PreserveConfig, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cfg.check()


def test_propagate_uses_the_exports_sampling_defaults(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_genprop_model().eval()
    model.config.sampling = SamplingConfig(
        steps=2,
        guidance=3.0,
        task_guidance={"tracking": 12.0},
        preserve=PreserveConfig(mode="latent", dilate=2, blur=0.5),
        mask_threshold=0.4,
        task_mask_threshold={"tracking": 0.1},
    )
    model.save_pretrained(tmp_path / "export")
    loaded = GenPropModel.from_pretrained(tmp_path / "export").eval()
    assert loaded.config.sampling == model.config.sampling
    seen: list[dict] = []
    real = sampler_module.sample_latents

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("steps", "guidance", "preserve")})
        return real(*args, **kwargs)

    monkeypatch.setattr(propagate_module, "sample_latents", spy)
    video = _video(loaded.config, frames=loaded.config.num_frames)  # one chunk per call
    results = [
        propagate(loaded, video, video[0], "tracking"),
        propagate(loaded, video, video[0], "removal"),
        propagate(loaded, video, video[0], "removal", guidance=1.0, steps=1, mask_threshold=0.7),
    ]
    assert [s["guidance"] for s in seen] == [12.0, 3.0, 1.0]
    assert [s["steps"] for s in seen] == [2, 2, 1]
    assert seen[0]["preserve"] == PreserveConfig(mode="latent", dilate=2, blur=0.5)
    assert [r.mask_threshold for r in results] == [0.1, 0.4, 0.7]
    for r in results:
        np.testing.assert_array_equal(r.regions, r.masks >= r.mask_threshold)


@pytest.mark.parametrize(
    ("sampling", "field"),
    [
        ({"preserve": {"mode": "everywhere"}}, "sampling.preserve.mode"),
        ({"preserve": {"dilate": -1}}, "sampling.preserve.dilate"),
        ({"preserve": {"blur": float("nan")}}, "sampling.preserve.blur"),
        ({"task_guidance": {"painting": 2.0}}, "sampling.task_guidance"),
        ({"task_guidance": {"edit": float("inf")}}, "sampling.task_guidance.edit"),
        ({"mask_threshold": 1.0}, "sampling.mask_threshold"),
        ({"task_mask_threshold": {"painting": 0.2}}, "sampling.task_mask_threshold"),
        ({"task_mask_threshold": {"edit": float("nan")}}, "sampling.task_mask_threshold.edit"),
        ({"task_mask_threshold": {"edit": 0}}, "sampling.task_mask_threshold.edit"),
        ({"steps": 0}, "sampling.steps"),
    ],
)
def test_bad_sampling_defaults_are_refused_naming_the_field(sampling: dict, field: str) -> None:
    data = tiny_genprop_model().config.to_dict()
    data["sampling"] = sampling
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        GenPropConfig.from_dict(data)


def test_configs_without_sampling_defaults_still_load() -> None:
    data = tiny_genprop_model().config.to_dict()
    del data["sampling"]  # exports written before sampling defaults existed
    assert GenPropConfig.from_dict(data).sampling == SamplingConfig()
