"""Keep what was not edited: blend the known (original) video outside GenProp's own edit mask.

GenProp's Mask Prediction Decoder (MPD) says where the edit is, effects included. Outside that
region the output should equal the input video, so, as inpainting pipelines keep their known
region, the sampler can replace the latents outside a soft, dilated version of the MPD mask:

* ``"latent"``: at every Euler step, after the update to time ``t'``, the latents outside the mask
  become the input video's latents noised to ``t'`` with the sampler's initial noise
  (``x ← m·x + (1 − m)·((1 − t')·c + t'·ε)``); the model keeps denoising the whole video, so the
  edit and the kept region are generated together and the seam is harmonised. At ``t' = 0`` the
  kept region is the input's latents exactly.
* ``"pixel"``: after decoding, the output keeps the input's pixels outside the mask (a plain
  composite; with a lossy VAE this is the only way to keep them bit-exact).
* ``"off"``: the plain model (the paper's).

The mask is ``sigmoid(MPD logits)``, dilated by a max-filter of ``dilate`` cells and smoothed by a
Gaussian of standard deviation ``blur`` cells (latent cells for ``"latent"``, pixels for
``"pixel"``). Latent frame 0 is never replaced: it is the (edited) first frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

PRESERVE_MODES = ("off", "latent", "pixel")


@dataclass
class PreserveConfig:
    """How the unedited region is kept (see the module docstring)."""

    mode: str = "off"  # "off" | "latent" | "pixel"
    dilate: int = 1  # max-filter radius, in cells of the blended grid
    blur: float = 1.0  # Gaussian sigma, in cells of the blended grid (0 = none)

    def check(self, where: str = "preserve") -> None:
        """Raise ValueError naming the field when a value is out of range."""
        if self.mode not in PRESERVE_MODES:
            raise ValueError(f"{where}.mode: expected one of {PRESERVE_MODES}, got {self.mode!r}")
        if isinstance(self.dilate, bool) or not isinstance(self.dilate, int):
            raise ValueError(f"{where}.dilate: expected an integer, got {self.dilate!r}")
        if not 0 <= self.dilate <= 64:
            raise ValueError(f"{where}.dilate: expected 0..64 cells, got {self.dilate}")
        blur = self.blur
        if isinstance(blur, bool) or not isinstance(blur, int | float) or not math.isfinite(blur):
            raise ValueError(f"{where}.blur: expected a finite number, got {blur!r}")
        if not 0.0 <= blur <= 32.0:
            raise ValueError(f"{where}.blur: expected 0..32 cells, got {blur}")


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def soft_edit_mask(prob: torch.Tensor, *, dilate: int, blur: float) -> torch.Tensor:
    """Edit probabilities (B, T, h, w) in [0, 1] -> dilated, smoothed mask (B, T, h, w) in [0, 1].

    Args:
        prob: Per-cell edit probability (e.g. ``sigmoid`` of the MPD logits).
        dilate: Max-filter radius in cells (0 = none): covers an edit's border the coarse
            mask misses.
        blur: Gaussian sigma in cells (0 = none): a soft seam instead of a hard step.
    """
    b, t = prob.shape[:2]
    m = rearrange(prob.float(), "b t h w -> (b t) 1 h w")
    if dilate > 0:
        m = F.max_pool2d(m, kernel_size=2 * dilate + 1, stride=1, padding=dilate)
    if blur > 0:
        k = _gaussian_kernel(blur, m.device)
        r = k.numel() // 2
        m = F.pad(m, (r, r, r, r), mode="replicate")
        m = F.conv2d(m, k.view(1, 1, 1, -1))
        m = F.conv2d(m, k.view(1, 1, -1, 1))
    # Dilation and blur only ever move the mask toward "edited" near an edit; clamp float error.
    return rearrange(m.clamp(0.0, 1.0), "(b t) 1 h w -> b t h w", b=b, t=t)


def blend_known(
    x: torch.Tensor, known: torch.Tensor, edit_mask: torch.Tensor, *, keep_first: bool = True
) -> torch.Tensor:
    """``edit_mask·x + (1 − edit_mask)·known`` on (B, T, C, h, w) latents or frames.

    Args:
        x: Generated latents or frames (B, T, C, h, w).
        known: The input's latents (noised to the same time) or frames, same shape.
        edit_mask: (B, T, h, w) in [0, 1], 1 where the edit is.
        keep_first: Leave frame 0 as generated (it is the edited first frame).
    """
    m = edit_mask.to(x.dtype).unsqueeze(2)
    if keep_first:
        m = m.clone()
        m[:, :1] = 1.0
    return m * x + (1.0 - m) * known
