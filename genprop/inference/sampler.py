"""Sampler for the rectified flow, with classifier-free guidance: GenProp's Euler grid or one of
diffusers' flow-matching schedulers (:mod:`genprop.inference.schedulers`, Wan's UniPC).

Guidance contrasts the conditional prediction with an unconditional one that uses the empty prompt
and the null task (the conditions dropped in training, see :mod:`genprop.losses`); the first frame
and the SCE content are kept in both. ``v = v_u + g·(v_c - v_u)``; ``guidance=1`` skips the
unconditional pass.

With a diffusers scheduler the loop asks it for the steps and calls ``scheduler.step(v, timestep,
x)`` as ``WanImageToVideoPipeline`` does: GenProp's velocity is the flow prediction ``ε - x0`` its
transformer returns, and the model sees the scheduler's timestep over 1000 (Wan's transformer
takes ``timestep = σ·1000``, integers for UniPC), while ``σ`` itself gives the clean estimate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from contracts.tasks import NULL_TASK
from genprop.flow import add_noise, sampling_times
from genprop.inference.preserve import blend_known, edit_mask, fixed_region_clips
from genprop.inference.schedulers import build_scheduler
from genprop.modeling.model import GenPropModel
from genprop.sampling_options import PreserveConfig, check_sampling_options, check_scheduler


@torch.no_grad()
def sample_latents(
    model: GenPropModel,
    first_latent: torch.Tensor,
    *,
    content: torch.Tensor | None = None,
    task: torch.Tensor | None = None,
    prompts: list[str] | None = None,
    steps: int = 20,
    guidance: float = 1.0,
    injection_weight: float = 1.0,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
    image_embeds: torch.Tensor | None = None,
    preserve: PreserveConfig | None = None,
    scheduler: str = "euler",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Generate latents from noise.

    Args:
        model: The model.
        first_latent: (B, T', C, h, w) I2V condition (see ``GenPropModel.encode_first_frame``).
        content: (B, T', C, h, w) SCE content latents, or None (plain I2V).
        task: (B,) long task indices, or None.
        prompts: B prompts, or None (empty).
        steps: Sampling steps.
        guidance: CFG scale (1 = no guidance).
        injection_weight: Scale of the SCE injections.
        generator: CPU generator for the initial noise (seeded sampling).
        progress: Called as ``progress(step, steps)`` after each step.
        image_embeds: (B, N_img, image_dim) CLIP image tokens of the first frame for backbones
            that take them (Wan2.1-I2V, see ``GenPropModel.encode_image``), else None.
        preserve: With ``mode="latent"`` (and ``content``), the latents outside the dilated edit
            mask (the MPD's, or where this step's clean estimate differs from the content) are
            replaced at every step by the content noised to the next time
            (:mod:`genprop.inference.preserve`); other modes sample unchanged. With a diffusers
            scheduler the clean estimate is replaced there instead (see :func:`_keep_clean`).
        scheduler: ``"euler"`` (GenProp's grid) or a diffusers scheduler (``"unipc"``,
            ``"flow_euler"``; :mod:`genprop.inference.schedulers`), shifted by the model's
            ``timestep_shift`` and configured by its Wan folder's ``scheduler/`` if any.

    Returns:
        Latents (B, T', C, h, w) and the last step's MPD logits (B, T', h, w) (None w/o content).

    Raises:
        ValueError: If ``steps``, ``guidance`` or ``injection_weight`` is out of range (see
            :func:`check_sampling_options`), or ``scheduler`` is unknown.
    """
    check_sampling_options(steps=steps, guidance=guidance, injection_weight=injection_weight)
    check_scheduler(scheduler)
    keep = preserve is not None and preserve.mode == "latent" and content is not None
    fixed = None
    if keep:
        preserve.check()
        if task is not None:
            fixed = fixed_region_clips(preserve, task)
    b = first_latent.shape[0]
    device = first_latent.device
    context, context_mask = model.encode_prompts(prompts, b)
    use_cfg = guidance != 1.0 and (task is not None or prompts is not None)
    if use_cfg:
        null_ctx, null_mask = model.encode_prompts(None, b)
        context = torch.cat([context, null_ctx])
        context_mask = torch.cat([context_mask, null_mask])
        if task is not None:
            task = torch.cat([task, torch.full_like(task, NULL_TASK)])
        first_in = torch.cat([first_latent, first_latent])
        content_in = None if content is None else torch.cat([content, content])
        image_in = None if image_embeds is None else torch.cat([image_embeds, image_embeds])
    else:
        first_in, content_in, image_in = first_latent, content, image_embeds
    noise = torch.randn(first_latent.shape, generator=generator).to(device, first_latent.dtype)
    x = noise
    solver = None
    if scheduler == "euler":
        sigmas = sampling_times(steps, shift=model.config.timestep_shift).to(device)
        model_times = sigmas[:-1]
    else:
        folder = getattr(model.config.backbone, "path", None)
        solver = build_scheduler(scheduler, shift=model.config.timestep_shift, folder=folder)
        solver.set_timesteps(steps, device=device)
        sigmas = solver.sigmas.float().to(device)
        model_times = solver.timesteps.float() / solver.config.num_train_timesteps
    mask_logits = None
    for i in range(steps):
        t_now, sigma, sigma_next = model_times[i], sigmas[i], sigmas[i + 1]
        x_in = torch.cat([x, x]) if use_cfg else x
        # Two-expert backbones: this step's expert, from the fp32 schedule, before any cast.
        expert = model.expert_for(t_now.reshape(1))
        out = model(
            x_in,
            t_now.expand(x_in.shape[0]),
            first_in,
            content=content_in,
            task=task,
            context=context,
            context_mask=context_mask,
            injection_weight=injection_weight,
            # The last step's MPD masks are returned; latent preservation reads them every step.
            predict_mask=keep or i == steps - 1,
            image_embeds=image_in,
            expert=expert,
        )
        v = out.velocity
        if use_cfg:
            v_cond, v_uncond = v.chunk(2)
            v = v_uncond + guidance * (v_cond - v_uncond)
        clean_estimate = x - sigma * v  # x̂0 of rectified flow (x_t = (1 - t)·x0 + t·ε)
        if out.mask_logits is not None:
            mask_logits = out.mask_logits[:b]
        edit = None
        if keep:
            edit = latent_edit_mask(preserve, mask_logits, clean_estimate, content, fixed)
        if solver is None:
            x = x + (sigma_next - sigma) * v
            if edit is not None:
                x = blend_known(x, add_noise(content, noise, sigma_next.expand(b)), edit)
        else:
            if edit is not None:
                v = _keep_clean(x, v, sigma, content, edit)
            x = solver.step(v.float(), solver.timesteps[i], x.float(), return_dict=False)[0]
        if progress is not None:
            progress(i + 1, steps)
    return x, mask_logits


def _keep_clean(
    x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor, content: torch.Tensor, edit: torch.Tensor
) -> torch.Tensor:
    """The velocity whose clean estimate is the content outside the edit (``edit`` 0).

    Latent preservation for a diffusers scheduler: a multistep scheduler rebuilds its sample from
    its own history (UniPC's corrector recomputes ``x`` from the previous step's sample and clean
    estimates), so a sample blended between steps would be dropped. It steps from the clean
    estimates instead, so replacing those keeps the content, reached exactly at the final σ = 0.
    Frame 0 (the given first frame) keeps the model's estimate. Every step's σ is > 0.
    """
    kept = blend_known(x - sigma * v, content, edit)
    return (x - kept) / sigma


def latent_edit_mask(
    preserve: PreserveConfig,
    mask_logits: torch.Tensor,
    clean_estimate: torch.Tensor,
    content: torch.Tensor,
    fixed: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step's soft edit mask (B, T', h, w) for latent preservation.

    Args:
        preserve: The preservation settings (``source``, ``threshold`` in latent units, ...).
        mask_logits: (B, T', h, w) the MPD's logits of this step.
        clean_estimate: (B, T', C, h, w) this step's x̂0 (guided).
        content: (B, T', C, h, w) the input video's latents.
        fixed: (B,) bool, the clips whose task has a fixed edit region (or None).
    """
    return edit_mask(preserve, torch.sigmoid(mask_logits.float()), clean_estimate, content, fixed)
