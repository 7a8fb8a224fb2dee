"""Content gate: a per-element copy of the content video into the prediction (ours).

The paper's generator must rebuild every pixel of the unedited region from the SCE's injected
features. A large pretrained backbone can; a small one trained from scratch cannot: a token of the
demo's pixel-space codec holds 192 values against a 128-wide transformer, so backgrounds come out
blocky (PSNR_m ~26 dB) however well the SCE has learned *what* to keep. The gate adds the missing
path: for every latent element it predicts the probability that the element is *kept* from the
content video, and takes that share of the clean prediction x̂0 from the content::

    x̂0' = x̂0 + g ⊙ (content - x̂0)      g = injection_weight · s · sigmoid(gate_logits)

It reads the Mask Prediction Decoder's block output (the MPD's trainable copy of the last
backbone block, run on the penultimate tokens): after the SCE's injections that block is the
only trainable computation that attends across tokens, which finding the edited object in frame
t from the edit in frame 0 takes; the frozen backbone blocks and a per-token head cannot learn it.

Training (``genprop.losses``): ``sigmoid(gate_logits)`` is supervised with binary cross-entropy
towards ``1 - mask`` (the training pairs' edit masks are exactly where target and content differ,
shadows included where the recipe made them), and the diffusion loss trains the rest. Trained
on the diffusion loss alone a gate learns to *hedge* (copying 30 % of an object to be removed
lowers the MSE of a blurry generator), so the supervision is what makes it decisive. At test time
no mask is given: ``1 - sigmoid(gate_logits)`` is the model's own edit mask.

The strength s is a learned scalar initialised at 0, so GenProp at initialisation still equals
the backbone exactly. It is stored as s / :data:`STRENGTH_SCALE`: Adam moves a parameter by
about one learning rate per step, and at 5e-4 a bare scalar would need thousands of steps to
reach 1. ``injection_weight = 0`` switches the gate off together with the injections. The blend
is exact in x̂0 space for x0-prediction heads and goes through ``x0 = x_t - t·v`` for velocity
heads (see :meth:`ContentGate.blend`).
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import nn

from genprop.backbones.base import Backbone, Conditioning, unpatchify
from genprop.modeling.codec import LatentCodec, SpaceToDepthCodec

STRENGTH_SCALE = 25.0  # s = STRENGTH_SCALE · parameter: s can reach 1 within ~100 Adam steps


class ContentGate(nn.Module):
    """MPD block features (B, N, D) -> per-element keep logits (B, T', C, h, w); strength s = 0
    at init."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        pt, ph, pw = backbone.patch_size
        if pt != 1:
            raise ValueError(
                f"backbone patch {backbone.patch_size}: the gate needs temporal patch 1"
            )
        self.patch = (ph, pw)
        self.channels = backbone.latent_channels
        dim = backbone.dim
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.head = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU("tanh"), nn.Linear(dim, ph * pw * self.channels)
        )
        self.strength = nn.Parameter(torch.zeros(()))
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Strength 0 (g = 0 everywhere: GenProp == backbone); logits start at 0 (p = 0.5)."""
        self.strength.zero_()
        nn.init.zeros_(self.head[2].weight)
        nn.init.zeros_(self.head[2].bias)

    def forward(self, tokens: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Features (B, N, D) in (t h w) order -> keep logits (B, T', C, h, w)."""
        return unpatchify(self.head(self.norm(tokens)), cond.grid, self.patch)

    def weights(self, logits: torch.Tensor, injection_weight: float = 1.0) -> torch.Tensor:
        """Keep logits (B, T', C, h, w) -> copy weights g = injection_weight · s · sigmoid."""
        return (injection_weight * STRENGTH_SCALE * self.strength) * torch.sigmoid(logits)

    @staticmethod
    def blend(
        velocity: torch.Tensor,
        gate: torch.Tensor,
        x_t: torch.Tensor,
        content: torch.Tensor,
        t: torch.Tensor,
        *,
        t_min: float,
    ) -> torch.Tensor:
        """The velocity whose clean estimate is ``x̂0 + g ⊙ (content - x̂0)``.

        With ``x̂0 = x_t - τ·v`` and τ = max(t, t_min) (the x0 head's own convention), the blended
        velocity is ``v + g ⊙ ((x_t - content)/τ - v)``.

        Args:
            velocity: (B, T', C, h, w) the backbone's velocity.
            gate: (B, T', C, h, w) copy weights g.
            x_t: (B, T', C, h, w) the noisy latents.
            content: (B, T', C, h, w) the content video's latents.
            t: (B,) flow time.
            t_min: floor of t in the division.
        """
        tau = t.to(velocity.dtype).clamp(min=t_min).view(-1, 1, 1, 1, 1)
        copy_velocity = (x_t.to(velocity.dtype) - content.to(velocity.dtype)) / tau
        return velocity + gate.to(velocity.dtype) * (copy_velocity - velocity)


def gate_target(mask: torch.Tensor, codec: LatentCodec, m_latent: torch.Tensor) -> torch.Tensor:
    """What ``sigmoid(gate_logits)`` should be: 1 where the target equals the content.

    Args:
        mask: (B, T, H, W) pixel edit masks in [0, 1].
        codec: The model's codec. For the exact space-to-depth codec every latent element is one
            pixel's colour, so the target is the pixel mask itself, rearranged like the pixels.
        m_latent: (B, T', h, w) the latent-grid mask m̃ (``region_aware_loss.latent_mask``),
            used, broadcast over channels, for any other codec.

    Returns:
        (B, T', C, h, w) in [0, 1].
    """
    if isinstance(codec, SpaceToDepthCodec):
        keep = 1.0 - mask.float()
        return codec.pack(repeat(keep, "b t h w -> b t c h w", c=3))
    return repeat(1.0 - m_latent.float(), "b t h w -> b t c h w", c=codec.latent_channels)
