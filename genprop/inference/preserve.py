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

Where the edit is (``source``):

* ``"mpd"``: ``sigmoid(MPD logits)``, the region the model predicts it edits.
* ``"change"``: where the model's output differs from the input by more than ``threshold``
  (largest channel difference), after a morphological opening of radius ``opening`` cells that
  drops isolated specks of regeneration noise. ``"pixel"``: the decoded output vs the input
  video, pixel values in [0, 1]; the composite then only replaces pixels the model left within
  ``threshold`` of the input, so it cannot undo an edit the model made, only the noise of
  regenerating what it did not edit. ``"latent"``: at every step, the step's clean estimate x̂0
  vs the input's latents, in latent units (the codec's normalised scale); a region is held to
  the input once the model itself reproduces it, and what the model changes keeps being
  generated.
* ``"union"``: either of the two.

With ``link_radius`` > 0 the change mask keeps only the changes that continue the user's edit:
frame 0's changed region is where the edited first frame differs from the input, and in each
next frame a connected changed region (8-connected) is kept only if it comes within
``link_radius`` cells of the region kept in the frame before (when that frame kept nothing, the
search area of the frame before, grown by ``link_radius``). An edit is followed as it moves, and
regenerated texture that changed away from any edit is put back to the input. It cannot undo a
change that touches the edit, and it drops an edit the model made *without* any link to the
first frame's (e.g. an effect that appears only later, far from the edited object).

For the tasks in ``fixed_region_tasks`` the edit region does not move: outpainting extends the
canvas by the same band in every frame, so every frame's change mask is frame 0's (where the
edited first frame differs from the input), taken as it is (no dilation or blur: the band is
known exactly), and with ``source="change"`` everything outside it stays the input exactly.

The mask is then dilated by a max-filter of ``dilate`` cells and smoothed by a Gaussian of
standard deviation ``blur`` cells (latent cells for ``"latent"``, pixels for ``"pixel"``).
Latent frame 0 is never replaced: it is the (edited) first frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from contracts.tasks import TASKS
from genprop.sampling_options import PreserveConfig


def fixed_region_clips(preserve: PreserveConfig, task: torch.Tensor) -> torch.Tensor:
    """(B,) long task indices -> (B,) bool: the task's edit region is fixed (frame 0's)."""
    fixed = [TASKS.index(t) for t in preserve.fixed_region_tasks]
    return torch.isin(task, torch.tensor(fixed, dtype=task.dtype, device=task.device))


def kept_changes(
    preserve: PreserveConfig, changed: torch.Tensor, fixed: torch.Tensor | None = None
) -> torch.Tensor:
    """A (B, T, h, w) change mask -> the changes kept as the edit (``link_radius``,
    ``fixed_region_tasks``); ``fixed``: (B,) bool, the clips whose region is frame 0's."""
    if preserve.link_radius:
        changed = link_to_first_frame(changed, preserve.link_radius)
    if fixed is not None and bool(fixed.any()):
        held = changed[:, :1].expand_as(changed)
        changed = torch.where(fixed.to(changed.device).view(-1, 1, 1, 1), held, changed)
    return changed


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


def change_mask(
    result: torch.Tensor, video: torch.Tensor, *, threshold: float, opening: int
) -> torch.Tensor:
    """Where the output differs from the input: (B, T, C, H, W) frames in [0, 1] -> (B, T, H, W).

    A pixel is changed when its largest channel difference exceeds ``threshold``; a
    morphological opening (min- then max-filter) of radius ``opening`` then drops changed regions
    thinner than ``2·opening + 1`` pixels, the speckle of regenerated texture.
    """
    diff = (result.float() - video.float()).abs().amax(dim=2)
    changed = (diff > threshold).float()
    if opening > 0:
        b, t = changed.shape[:2]
        m = rearrange(changed, "b t h w -> (b t) 1 h w")
        k, r = 2 * opening + 1, opening
        m = -F.max_pool2d(-m, kernel_size=k, stride=1, padding=r)
        m = F.max_pool2d(m, kernel_size=k, stride=1, padding=r)
        changed = rearrange(m, "(b t) 1 h w -> b t h w", b=b, t=t)
    return changed


def link_to_first_frame(changed: torch.Tensor, radius: int) -> torch.Tensor:
    """Keep the changed regions linked, frame by frame, to frame 0's: (B, T, h, w) -> same.

    Frame 0 is kept as it is (it is the user's edit). In frame t a connected changed region
    (8-connected) is kept when it overlaps the region kept in frame t − 1 dilated by ``radius``
    cells (a square max-filter); when frame t − 1 kept nothing, the search area of frame t − 1
    grown by ``radius`` again, so an edit that is briefly occluded or unchanged is still found
    when it reappears near where it was.

    Args:
        changed: (B, T, h, w) change mask, nonzero where changed (see :func:`change_mask`).
        radius: Largest gap, in cells, a link may cross between consecutive frames (>= 1).
    """
    if radius < 1:
        raise ValueError(f"link_radius: expected >= 1 cells, got {radius}")
    masks = (changed.detach().cpu().numpy() > 0).astype(np.uint8)
    kept = np.zeros_like(masks)
    grow = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    for b in range(masks.shape[0]):
        kept[b, 0] = masks[b, 0]
        search = cv2.dilate(kept[b, 0], grow)
        for t in range(1, masks.shape[1]):
            count, labels = cv2.connectedComponents(masks[b, t], connectivity=8)
            if count > 1:
                hits = np.unique(labels[(search > 0) & (masks[b, t] > 0)])
                kept[b, t] = np.isin(labels, hits[hits > 0])
            base = kept[b, t] if kept[b, t].any() else search
            search = cv2.dilate(base, grow)
    return torch.from_numpy(kept).to(device=changed.device, dtype=changed.dtype)


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


def edit_mask(
    preserve: PreserveConfig,
    mpd_prob: torch.Tensor,
    output: torch.Tensor,
    reference: torch.Tensor,
    fixed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Where the output is kept: (B, T, h, w) in [0, 1], 1 on the edit (see the module docstring).

    Args:
        preserve: The settings (``source``, ``threshold``, ``opening``, ``link_radius``, ...).
        mpd_prob: (B, T, h, w) the MPD's edit probabilities (read by source mpd / union).
        output: (B, T, C, h, w) what was generated (decoded frames in [0, 1], or x̂0 latents).
        reference: (B, T, C, h, w) the input video, in the same space as ``output``.
        fixed: (B,) bool, the clips whose task has a fixed edit region (or None): their mask is
            the held region as it is, without dilation or blur (the band is known exactly).
    """
    edited = mpd_prob.float()
    if preserve.source != "mpd":
        changed = change_mask(
            output, reference, threshold=preserve.threshold, opening=preserve.opening
        )
        changed = kept_changes(preserve, changed, fixed)
        edited = changed if preserve.source == "change" else torch.maximum(edited, changed)
    soft = soft_edit_mask(edited, dilate=preserve.dilate, blur=preserve.blur)
    if fixed is None or not bool(fixed.any()):
        return soft
    return torch.where(fixed.to(soft.device).view(-1, 1, 1, 1), edited.to(soft.dtype), soft)


def keep_input_pixels(
    result: np.ndarray,
    video: np.ndarray,
    masks: torch.Tensor,
    preserve: PreserveConfig,
    *,
    fixed: bool = False,
) -> np.ndarray:
    """Pixel preservation: the output where it edited, the input elsewhere.

    Args:
        result: (T, H, W, 3) uint8 output frames (frame 0: the edited first frame).
        video: (T, H, W, 3) uint8 input frames.
        masks: (T, H, W) the MPD's edit probabilities in [0, 1] (read by source mpd / union).
        preserve: The settings (``mode`` is not read: this is the pixel composite).
        fixed: The task's edit region is frame 0's in every frame (``fixed_region_tasks``).

    Returns:
        (T, H, W, 3) uint8 frames.
    """
    frames = [
        rearrange(torch.from_numpy(v).float(), "t h w c -> 1 t c h w") for v in (result, video)
    ]
    mpd = masks[None].cpu().float()
    edit = edit_mask(preserve, mpd, frames[0] / 255.0, frames[1] / 255.0, torch.tensor([fixed]))
    out = blend_known(frames[0], frames[1], edit)
    return rearrange(out[0].round().clamp(0, 255).to(torch.uint8), "t c h w -> t h w c").numpy()
