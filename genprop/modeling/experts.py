"""Timestep routing of a two-expert backbone (Wan2.2-I2V-A14B) and the training expert choice.

Wan2.2-A14B denoises with two transformers: ``transformer`` (high noise) for timesteps
``t·1000 >= boundary_ratio·1000`` and ``transformer_2`` (low noise) below (diffusers'
``WanImageToVideoPipeline``: ``boundary_timestep = boundary_ratio * num_train_timesteps``, with
timesteps = σ·1000 and our t = σ). GenProp gives each expert its own SCE and MPD (copies of its
own expert's blocks) and trains each on its own timestep range.

One training step trains one expert: with data parallelism every rank must run the same parameters,
so the expert is drawn from a generator seeded by something all ranks share (the global step), with
probability equal to the expert's share of the (shifted) training-time distribution; each rank then
draws its own times inside that expert's range. Over many steps each expert sees exactly the times
it would see if times were drawn first and then routed. A run may also train one expert only
(``model.net.train_experts=high|low``), as peers train one expert per run.

The expert of a forward pass is an integer decided once, from fp32 times, before anything can be
cast: a time just above the boundary (0.9 <= t < 0.9004) rounds below it in bf16. Were the expert
derived from a cast time (a policy that casts forward inputs, a bf16 model), that rank would run
the low-noise expert while the others run the high-noise one, and FSDP would all-gather and
reduce shards of two different experts without an error. So the loss and the sampler pass
``expert=`` (:func:`expert_for_times` on fp32 times), routing from times refuses anything less
precise than fp32, and the sharding plan passes t to the model uncast
(:mod:`genprop.scale.sharding`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from genprop.backbones.base import Backbone
from genprop.flow import training_time_cdf
from genprop.modeling.content_encoder import SelectiveContentEncoder
from genprop.modeling.mask_decoder import MaskPredictionDecoder

HIGH_NOISE, LOW_NOISE = 0, 1
# model.net.train_experts -> the experts a run trains (each with its own SCE and MPD).
TRAIN_EXPERTS: dict[str, tuple[int, ...]] = {
    "both": (HIGH_NOISE, LOW_NOISE),
    "high": (HIGH_NOISE,),
    "low": (LOW_NOISE,),
}
# Width of the gap under the boundary kept out of the low-noise range, so a float32 time drawn
# there never rounds onto the boundary (which belongs to the high-noise expert).
_BELOW = 1e-6


def expert_index(t: torch.Tensor, boundary_ratio: float) -> torch.Tensor:
    """Per-sample expert (B,) long: 0 = high noise (``t >= boundary``), 1 = low noise.

    Compared in diffusers' timestep units (float32 ``t·1000`` against ``boundary_ratio·1000``), as
    its pipeline does.
    """
    return (t.float() * 1000.0 < boundary_ratio * 1000.0).long()


def expert_for_times(t: torch.Tensor, boundary_ratio: float) -> int:
    """The one expert that denoises at flow times ``t`` (B,): 0 = high noise, 1 = low noise.

    Raises:
        ValueError: If ``t`` is less precise than float32 (a cast time may have crossed the
            boundary: decide the expert before casting and pass it as ``expert=``), or if ``t``
            spans the boundary (one forward pass runs one expert).
    """
    if t.dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"t: expert routing needs float32 flow times, got {t.dtype} (a cast time can cross "
            f"the expert boundary {boundary_ratio}); decide the expert before casting and pass "
            "expert="
        )
    idx = expert_index(t, boundary_ratio)
    if bool((idx != idx[0]).any()):
        raise ValueError(
            f"t: {t.tolist()} spans the expert boundary {boundary_ratio}; one forward pass runs "
            "one expert"
        )
    return int(idx[0])


def check_train_experts(choice: str, experts: int) -> tuple[int, ...]:
    """The experts ``model.net.train_experts`` names, for a backbone of ``experts`` experts.

    Raises:
        ValueError: naming the option, for an unknown choice or one expert named on a
            one-expert backbone.
    """
    if choice not in TRAIN_EXPERTS:
        raise ValueError(
            f"model.net.train_experts: expected one of {list(TRAIN_EXPERTS)}, got {choice!r}"
        )
    if experts == 1 and choice != "both":
        raise ValueError(
            f"model.net.train_experts: {choice!r} needs a two-expert backbone (Wan2.2-I2V-A14B); "
            "this one has one expert, use 'both'"
        )
    return TRAIN_EXPERTS[choice] if experts == 2 else (HIGH_NOISE,)


def expert_time_range(expert: int, boundary_ratio: float) -> tuple[float, float]:
    """Flow times ``[lo, hi]`` an expert denoises."""
    if expert == HIGH_NOISE:
        return boundary_ratio, 1.0
    return 0.0, boundary_ratio - _BELOW


def expert_shares(boundary_ratio: float, shift: float) -> tuple[float, float]:
    """(high, low): each expert's share of the training times (shifted logit-normal)."""
    low = training_time_cdf(boundary_ratio, shift)
    return 1.0 - low, low


def choose_training_expert(
    boundary_ratio: float,
    shift: float,
    *,
    seed: int | None,
    generator: torch.Generator | None,
    experts: tuple[int, ...] = TRAIN_EXPERTS["both"],
) -> int:
    """Draw the expert one training step trains (see module docstring).

    Args:
        boundary_ratio: The pipeline's ``boundary_ratio``.
        shift: The training-time shift.
        seed: Shared by all ranks (e.g. the global step); None draws from ``generator`` instead
            (single process).
        generator: Used when ``seed`` is None.
        experts: The experts the run trains (:data:`TRAIN_EXPERTS`); with one, it is every step's.
    """
    if len(experts) == 1:
        return experts[0]
    high, _ = expert_shares(boundary_ratio, shift)
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else generator
    return HIGH_NOISE if float(torch.rand((), generator=gen)) < high else LOW_NOISE


class ExpertModules(NamedTuple):
    """The pieces one denoising step runs: an expert's backbone, SCE and MPD."""

    backbone: Backbone
    content_encoder: SelectiveContentEncoder
    mask_decoder: MaskPredictionDecoder


class LowNoiseExpert(nn.Module):
    """The low-noise expert (``transformer_2``) with its own SCE and MPD (copies of its blocks)."""

    def __init__(self, backbone: Backbone, sce_blocks: int, *, reference: Backbone) -> None:
        super().__init__()
        for name in ("dim", "patch_size", "text_dim", "image_dim", "latent_channels"):
            if getattr(backbone, name) != getattr(reference, name):
                raise ValueError(
                    f"config.backbone: the two experts differ in {name} "
                    f"({getattr(reference, name)} vs {getattr(backbone, name)})"
                )
        self.backbone = backbone
        self.content_encoder = SelectiveContentEncoder(backbone, sce_blocks)
        self.mask_decoder = MaskPredictionDecoder(backbone)

    def modules_for_step(self) -> ExpertModules:
        """This expert's pieces."""
        return ExpertModules(self.backbone, self.content_encoder, self.mask_decoder)
