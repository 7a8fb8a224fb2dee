"""The sampler's scheduler choice, and the sampling defaults a Wan export carries."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from genprop_helpers import tiny_genprop_model
from test_preserve import _force_mpd

from genprop.backbones.wan.folder import wan_config
from genprop.configs import SamplingConfig
from genprop.inference.sampler import sample_latents
from genprop.inference.schedulers import build_scheduler
from genprop.sampling_options import PreserveConfig

GEOMETRY = dict(num_frames=5, height=32, width=32, sce_blocks=2)


def test_scheduler_field_is_checked_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"^sampling\.scheduler: expected one of .*'ddim'"):
        SamplingConfig(scheduler="ddim").check()
    assert SamplingConfig.from_dict({"scheduler": "unipc"}).scheduler == "unipc"
    model = tiny_genprop_model().eval()
    with pytest.raises(ValueError, match=r"^scheduler: expected one of"):
        sample_latents(model, torch.zeros(1, 2, 4, 4, 4), steps=1, scheduler="UniPC")


def test_tiny_dit_keeps_its_euler_defaults() -> None:
    sampling = tiny_genprop_model().config.sampling
    assert (sampling.scheduler, sampling.steps, sampling.guidance) == ("euler", 20, 1.0)


@pytest.mark.parametrize(
    ("variant", "steps", "guidance", "shift"),
    [("wan2.1-i2v", 40, 5.0, 3.0), ("wan2.2-a14b", 40, 3.5, 5.0)],
)
def test_wan_export_carries_wans_sampling_defaults(
    tiny_wan_folder: Callable[[str], Path], variant: str, steps: int, guidance: float, shift: float
) -> None:
    cfg = wan_config(tiny_wan_folder(variant), **GEOMETRY)
    cfg.sampling.check()
    assert (cfg.sampling.scheduler, cfg.sampling.steps, cfg.sampling.guidance) == (
        "unipc",
        steps,
        guidance,
    )
    assert cfg.timestep_shift == shift


def test_folder_scheduler_class_and_config_are_read(
    tiny_wan_folder: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = tmp_path / "w"
    shutil.copytree(tiny_wan_folder("wan2.1-i2v"), folder)
    path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config["solver_order"] = 3  # a folder's own setting is kept; its shift is the model's
    path.write_text(json.dumps(config))
    unipc = build_scheduler("unipc", shift=7.0, folder=folder)
    assert (unipc.config.solver_order, unipc.config.flow_shift) == (3, 7.0)
    assert unipc.config.prediction_type == "flow_prediction" and unipc.config.use_flow_sigmas
    euler = build_scheduler("flow_euler", shift=7.0, folder=folder)  # UniPC's file: not read
    assert type(euler).__name__ == "FlowMatchEulerDiscreteScheduler" and euler.config.shift == 7.0
    path.write_text(json.dumps({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}))
    assert wan_config(folder, **GEOMETRY).sampling.scheduler == "flow_euler"
    path.unlink()
    assert wan_config(folder, **GEOMETRY).sampling.scheduler == "unipc"


def _sample(model, scheduler: str, preserve: PreserveConfig | None) -> tuple[torch.Tensor, ...]:
    cfg = model.config
    gen = torch.Generator().manual_seed(3)
    video = torch.rand(1, cfg.num_frames, 3, cfg.height, cfg.width, generator=gen) * 2 - 1
    content = model.codec.encode(video)
    first = model.encode_first_frame(video[:, 0], cfg.num_frames)
    x, logits = sample_latents(
        model,
        first,
        content=content,
        task=torch.tensor([0]),
        steps=4,
        generator=torch.Generator().manual_seed(0),
        preserve=preserve,
        scheduler=scheduler,
    )
    assert logits is not None
    return x, content


@pytest.mark.parametrize("scheduler", ["unipc", "flow_euler"])
def test_latent_preservation_with_a_diffusers_scheduler(
    monkeypatch: pytest.MonkeyPatch, scheduler: str
) -> None:
    model = tiny_genprop_model().eval()
    plain, content = _sample(model, scheduler, None)
    assert not torch.allclose(plain[:, 1:], content[:, 1:], atol=1e-2)
    keep = PreserveConfig(mode="latent", dilate=0, blur=0.0)
    _force_mpd(model, monkeypatch, logit=-40.0)  # nothing edited: the content comes back
    held, _ = _sample(model, scheduler, keep)
    torch.testing.assert_close(held[:, 1:], content[:, 1:], atol=1e-4, rtol=1e-4)
    _force_mpd(model, monkeypatch, logit=80.0)  # all edited: the plain sample
    free, _ = _sample(model, scheduler, keep)
    torch.testing.assert_close(free, plain, atol=1e-5, rtol=1e-5)


def test_unipc_is_another_sampler_than_euler() -> None:
    model = tiny_genprop_model().eval()
    euler, _ = _sample(model, "euler", None)
    unipc, _ = _sample(model, "unipc", None)
    assert not torch.allclose(euler, unipc, atol=1e-3)
