"""Training losses: stage 1 (plain I2V flow matching) and stage 2 (full GenProp loss).

Classifier-free-guidance dropout (training side of :mod:`genprop.inference.sampler`'s guidance):
the text
prompt is replaced by the empty prompt with probability ``cfg_dropout.text``, and (stage 2) the task
label by the null task with probability ``cfg_dropout.task``. The first frame and the SCE content
are never dropped: they define the problem, and guidance contrasts "with / without text and task".

A step starts either from pixels (the frozen encoders run here:
:func:`genprop.modeling.latents.encode_batch`) or from an
:class:`~genprop.modeling.latents.EncodedBatch`
(precomputed by ``genprop-cache``): both give the same loss for the same samples and generator,
since the encoders draw no random numbers and dropped prompts get the empty prompt's embedding
either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from contracts.tasks import NULL_TASK
from genprop.flow import add_noise, sample_training_time, velocity_target
from genprop.modeling.experts import choose_training_expert, expert_time_range
from genprop.modeling.latents import EncodedBatch, encode_batch
from genprop.modeling.model import GenPropModel
from genprop.region_aware_loss import (
    LossWeights,
    feature_sensitivity,
    mpd_loss,
    region_split_mse,
)
from genprop.video_batch import VideoBatch, check_batch_type


@dataclass
class CFGDropout:
    """Probabilities of dropping each condition during training."""

    text: float = 0.1
    task: float = 0.1


def _bernoulli(p: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def training_losses(
    model: GenPropModel,
    batch: VideoBatch | EncodedBatch,
    *,
    stage: str = "i2v",
    weights: LossWeights | None = None,
    cfg_dropout: CFGDropout | float | None = None,
    generator: torch.Generator | None = None,
    expert_seed: int | None = None,
) -> dict[str, torch.Tensor]:
    """Compute the loss terms for one batch.

    Args:
        model: The GenProp model.
        batch: Pixels (:class:`VideoBatch`; stage "genprop" needs its ``sce``, ``mask`` and
            ``task``), or the same batch already encoded (:class:`EncodedBatch`; its
            ``empty_context`` is needed when a prompt is dropped).
        stage: "i2v" (backbone only, plain flow matching) or "genprop" (region-aware loss).
        weights: Region-aware loss weights (stage "genprop"); default :class:`LossWeights`.
        cfg_dropout: :class:`CFGDropout`, or one probability for all conditions; default 0.1.
        generator: CPU generator for times, noise and dropout (reproducible losses).
        expert_seed: Two-expert backbones: seed of this step's expert choice, the same on every
            rank (e.g. the global step) so all ranks train the same expert; None draws it from
            ``generator`` (one process). See :mod:`genprop.modeling.experts`.

    Returns:
        ``"diffusion"`` (plain MSE of the output velocity, frames 2..T), every term with a
        non-zero weight (``"non_mask"``, ``"mask"``, ``"grad"``, ``"mpd"``) and ``"total"`` (what
        to minimise). The region-aware terms are on the generator's own velocity; a model with a
        content gate adds ``"gated"`` (the gated output's MSE, = ``"diffusion"``) and ``"gate"``
        (binary cross-entropy of the gate's keep logits against ``1 - mask``).

    Raises:
        TypeError: If ``batch`` is neither a :class:`VideoBatch` nor an :class:`EncodedBatch`.
        ValueError: naming the batch field that is missing or mis-shaped, or a bad ``stage``.
    """
    if stage not in ("i2v", "genprop"):
        raise ValueError(f"stage: expected 'i2v' or 'genprop', got {stage!r}")
    check_batch_type(batch, VideoBatch, EncodedBatch)
    weights = weights or LossWeights()
    if cfg_dropout is None or isinstance(cfg_dropout, int | float):
        p = 0.1 if cfg_dropout is None else float(cfg_dropout)
        cfg_dropout = CFGDropout(text=p, task=p)
    device = model.device
    if isinstance(batch, EncodedBatch):
        b = batch.batch_size
        drop_text = _bernoulli(cfg_dropout.text, b, generator)
        enc = _latents_for(model, batch, stage).to(device).drop_prompts(drop_text)
    else:
        b = batch.validate(stage).batch_size
        drop_text = _bernoulli(cfg_dropout.text, b, generator)
        enc = encode_batch(model, batch, stage=stage, drop_prompts=drop_text)
    x0, first_latent = enc.target.float(), enc.first_latent.float()
    image_embeds = None if enc.image_embeds is None else enc.image_embeds.float()
    context, context_mask = enc.context.float(), enc.context_mask

    shift = model.config.timestep_shift
    t_range = expert = None
    if model.boundary_ratio is not None:
        # One integer for the whole step, the same on every rank, decided before any cast.
        expert = choose_training_expert(
            model.boundary_ratio,
            shift,
            seed=expert_seed,
            generator=generator,
            experts=model.train_experts,
        )
        t_range = expert_time_range(expert, model.boundary_ratio)
    t = sample_training_time(b, shift=shift, generator=generator, device=device, t_range=t_range)
    noise = torch.randn(x0.shape, generator=generator).to(device=device, dtype=x0.dtype)
    x_t = add_noise(x0, noise, t)
    v_target = velocity_target(x0, noise)

    content = task = None
    if stage == "genprop":
        content = enc.content.float()
        task = enc.task.to(device=device, dtype=torch.long).clone()
        task[_bernoulli(cfg_dropout.task, b, generator).to(device)] = NULL_TASK
    out = model(
        x_t,
        t,
        first_latent,
        content=content,
        task=task,
        context=context,
        context_mask=context_mask,
        predict_mask=bool(weights.mpd),
        image_embeds=image_embeds,
        expert=expert,
    )
    err = (out.velocity[:, 1:].float() - v_target[:, 1:].float()).pow(2)
    losses = {"diffusion": err.mean()}
    if stage == "i2v":
        losses["total"] = losses["diffusion"]
        return losses

    m = enc.mask.float()
    # The paper's terms are on the generator's own prediction: with a content gate, the blended
    # output alone would leave the generator untrained wherever the gate keeps the content.
    non_mask, in_mask = region_split_mse(out.generator_velocity, v_target, m)
    losses["non_mask"] = non_mask
    total = non_mask
    if weights.mask:
        losses["mask"] = in_mask
        total = total + weights.mask * in_mask
    if weights.grad:
        # L_grad differentiates the SCE's features (model.sce_features) of perturbed content;
        # the unperturbed features are the forward's own injections.
        def sce_features(c: torch.Tensor, reduce: Any = None) -> list[torch.Tensor]:
            return model.sce_features(
                c, first_latent, t, tokens=out.tokens, cond=out.cond, expert=expert, reduce=reduce
            )

        losses["grad"] = feature_sensitivity(
            sce_features,
            content,
            m,
            delta=weights.grad_delta,
            patch=model.token_patch,
            base=list(out.injections),
            sequence_parallel=model.sequence_parallel,  # injections are token shards under it
        )
        total = total + weights.grad * losses["grad"]
    if weights.mpd:
        losses["mpd"] = mpd_loss(out.mask_logits, m, weights.mpd_form)
        total = total + weights.mpd * losses["mpd"]
    if out.gate_logits is not None:
        # The gated output's error trains the gate's strength and refines where it keeps.
        losses["gated"] = losses["diffusion"]
        total = total + losses["gated"]
        if weights.gate:
            if enc.gate_keep is None:
                raise ValueError("batch: the content gate's target (gate_keep) is missing")
            losses["gate"] = F.binary_cross_entropy_with_logits(
                out.gate_logits[:, 1:].float(), enc.gate_keep[:, 1:].float()
            )
            total = total + weights.gate * losses["gate"]
    losses["total"] = total
    return losses


def _latents_for(model: GenPropModel, batch: EncodedBatch, stage: str) -> EncodedBatch:
    """``batch`` checked against the model's latent geometry (frames, channels, grid).

    Raises:
        ValueError: naming the field whose shape differs from what the model expects.
    """
    cfg, codec = model.config, model.codec
    f = codec.spatial_factor
    want = (model.latent_frames, codec.latent_channels, cfg.height // f, cfg.width // f)
    fields = {"target": batch.target, "first_latent": batch.first_latent}
    if stage == "genprop":
        fields["content"] = batch.content
    for name, value in fields.items():
        if value is None:
            raise ValueError(f"latent batch: field {name!r} is missing (stage {stage!r})")
        if tuple(value.shape[1:]) != want:
            raise ValueError(
                f"latent batch: {name} has (frames, channels, h, w) = {tuple(value.shape[1:])}, "
                f"the model expects {want}; the latents were made for another model or geometry"
            )
    if stage == "genprop" and batch.mask is None:
        raise ValueError(f"latent batch: field 'mask' is missing (stage {stage!r})")
    return batch
