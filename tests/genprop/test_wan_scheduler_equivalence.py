"""GenProp at zero injection samples the video diffusers' ``WanImageToVideoPipeline`` samples.

Same tiny random Wan folder (written locally, nothing downloaded), same scheduler, steps, guidance,
prompt, first frame and initial noise: a freshly built GenProp model (zero-initialised SCE
injections and task embedding) must give the pipeline's final latents and decoded video. GenProp's
unconditional branch (empty prompt, null task) is then the pipeline's negative prompt ""
(see :func:`_negative_prompt_embeds`). Tolerance: 1e-4 absolute and relative (fp32 on CPU; the
two compute the same network in a different operation order, and GenProp feeds ``timestep / 1000``
in fp32 where the pipeline feeds the integer timestep).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from genprop_helpers import tiny_wan_model
from PIL import Image

from genprop import GenPropModel
from genprop.backbones.wan.folder import wan_config
from genprop.inference.sampler import sample_latents
from genprop.inference.schedulers import build_scheduler

GEOMETRY = dict(num_frames=5, height=32, width=32, sce_blocks=2)
PROMPT = "a red car"
STEPS = 4  # UniPC: first-order start, then order 2 with its corrector
TOL = dict(atol=1e-4, rtol=1e-4)


def _inputs(model: GenPropModel) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    first = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 127.5 - 1
    video = torch.from_numpy(rng.uniform(-1, 1, (1, 5, 3, 32, 32)).astype(np.float32))
    return pixels, first, model.codec.encode(video)


def _genprop(
    model: GenPropModel, scheduler: str, guidance: float, seed: int
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """GenProp's latents (B, T', C, h, w), its input pixels, and its decoded video."""
    pixels, first, content = _inputs(model)
    latents, logits = sample_latents(
        model,
        model.encode_first_frame(first, GEOMETRY["num_frames"]),
        content=content,
        task=torch.tensor([1]),
        prompts=[PROMPT],
        steps=STEPS,
        guidance=guidance,
        generator=torch.Generator().manual_seed(seed),
        image_embeds=model.encode_image(first),
        scheduler=scheduler,
    )
    assert logits is not None and logits.shape == (1, 2, 4, 4)  # the MPD still runs
    return latents, pixels, model.codec.decode(latents)


@pytest.fixture(autouse=True)
def _no_ftfy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline cleans prompts with ftfy (not a GenProp dependency); :data:`PROMPT` is plain
    ASCII with single spaces, which that cleaning returns unchanged."""
    from diffusers.pipelines.wan import pipeline_wan_i2v

    if not pipeline_wan_i2v.is_ftfy_available():
        monkeypatch.setattr(pipeline_wan_i2v, "prompt_clean", lambda text: text)


def _negative_prompt_embeds(model: GenPropModel) -> torch.Tensor:
    """GenProp's empty prompt, as the pipeline's negative prompt embeddings.

    In the real Wan folders both encode "" as UMT5's one EOS token. The tiny word-level tokenizer
    adds no EOS, so there "" has no token at all: the pipeline zeros every position while GenProp
    keeps position 0 (its text encoder's rule for an empty prompt). Handing the pipeline GenProp's
    embedding keeps that tokenizer artefact out of a comparison of the samplers.
    """
    return model.encode_prompts([""], 1)[0]


def _pipeline(folder: Path, model: GenPropModel, scheduler: str) -> object:
    from diffusers import WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline.from_pretrained(folder, local_files_only=True)
    # The pipeline's own scheduler from the folder, with the shift GenProp's config carries (the
    # tiny A14B folder ships flow_shift 3.0, Wan2.2's A14B samples with 5.0).
    shift = model.config.timestep_shift
    pipe.scheduler = build_scheduler(scheduler, shift=shift, folder=folder)
    if scheduler == "unipc":
        assert pipe.scheduler.config.flow_shift == shift and pipe.scheduler.config.use_flow_sigmas
    return pipe


@pytest.fixture(scope="module", params=["wan2.1-i2v", "wan2.2-a14b"])
def case(request, tiny_wan_folder: Callable[[str], Path]) -> tuple[Path, GenPropModel]:
    folder = tiny_wan_folder(request.param)
    torch.manual_seed(0)
    return folder, GenPropModel.from_config(wan_config(folder, **GEOMETRY)).eval()


@pytest.mark.parametrize(
    ("scheduler", "guidance"), [("unipc", 1.0), ("unipc", 5.0), ("flow_euler", 5.0)]
)
def test_zero_injection_samples_the_pipelines_latents(
    case: tuple[Path, GenPropModel], scheduler: str, guidance: float
) -> None:
    folder, model = case
    ours, pixels, _ = _genprop(model, scheduler, guidance, seed=7)
    # The noise sample_latents draws, in the pipeline's (B, C, T', h, w) layout.
    noise = torch.randn(ours.shape, generator=torch.Generator().manual_seed(7))
    pipe = _pipeline(folder, model, scheduler)
    ref = pipe(
        image=Image.fromarray(pixels),
        prompt=PROMPT,
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        negative_prompt_embeds=_negative_prompt_embeds(model),
        latents=rearrange(noise, "b t c h w -> b c t h w"),
        output_type="latent",
    ).frames
    ref = rearrange(ref, "b c t h w -> b t c h w")
    assert not torch.allclose(ref, noise, atol=0.1)  # the sampler moved the noise
    torch.testing.assert_close(ours, ref, **TOL)


def test_zero_injection_decodes_the_pipelines_video(
    tiny_wan_folder: Callable[[str], Path],
) -> None:
    folder = tiny_wan_folder("wan2.1-i2v")
    torch.manual_seed(0)
    model = GenPropModel.from_config(wan_config(folder, **GEOMETRY)).eval()
    latents, pixels, video = _genprop(model, "unipc", 5.0, seed=3)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
    ref = _pipeline(folder, model, "unipc")(
        image=Image.fromarray(pixels),
        prompt=PROMPT,
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        negative_prompt_embeds=_negative_prompt_embeds(model),
        latents=rearrange(noise, "b t c h w -> b c t h w"),
        output_type="pt",
    ).frames  # (B, F, 3, H, W) in [0, 1]
    torch.testing.assert_close((video.clamp(-1, 1) + 1) / 2, ref, **TOL)


def test_injection_changes_the_sample(case: tuple[Path, GenPropModel]) -> None:
    """The comparisons above are not vacuous: non-zero SCE injections move GenProp's sample."""
    folder, model = case
    before, _, _ = _genprop(model, "unipc", 1.0, seed=7)
    after, _, _ = _genprop(tiny_wan_model(folder, GEOMETRY).eval(), "unipc", 1.0, seed=7)
    assert not torch.allclose(before, after, **TOL)
