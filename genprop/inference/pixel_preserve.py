"""Pixel preservation chunk by chunk: :func:`~genprop.inference.preserve.keep_input_pixels`
applied to a video streamed in pieces, with the same result as on the whole video.

The composite is per frame except for two things that reach back to earlier frames, and only those
are kept between chunks: with ``fixed_region_tasks`` every frame's change mask is frame 0's, and
with ``link_radius`` a frame's changes are kept by their link to the previous frame's kept region
(one ``(H, W)`` mask carried from chunk to chunk, see
:func:`~genprop.inference.preserve.link_to_first_frame`).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from einops import rearrange

from genprop.inference.preserve import (
    blend_known,
    change_mask,
    link_to_first_frame,
    soft_edit_mask,
)
from genprop.sampling_options import PreserveConfig


class ChunkedPixelPreserve:
    """Call on consecutive chunks of a video, frame 0 first.

    Args:
        preserve: The settings (``mode`` is not read: this is the pixel composite).
        fixed: The task's edit region is frame 0's in every frame (``fixed_region_tasks``).
    """

    def __init__(self, preserve: PreserveConfig, *, fixed: bool = False) -> None:
        self.preserve, self.fixed = preserve, fixed
        self._first_change: torch.Tensor | None = None  # (1, 1, H, W): frame 0's change mask
        self._link_base: np.ndarray | None = None  # (H, W) uint8: the last frame's link base
        self._frames_seen = 0

    def __call__(self, result: np.ndarray, video: np.ndarray, masks: torch.Tensor) -> np.ndarray:
        """The composite of the next chunk.

        Args:
            result: (n, H, W, 3) uint8 output frames (the video's frame 0 is the edited one).
            video: (n, H, W, 3) uint8 input frames at the same indices.
            masks: (n, H, W) the MPD's edit probabilities in [0, 1].

        Returns:
            (n, H, W, 3) uint8 frames.
        """
        p = self.preserve
        out, ref = (
            rearrange(torch.from_numpy(v).float(), "t h w c -> 1 t c h w") for v in (result, video)
        )
        edited = masks[None].cpu().float()
        if p.source != "mpd":
            changed = change_mask(
                out / 255.0, ref / 255.0, threshold=p.threshold, opening=p.opening
            )
            if p.link_radius:
                changed = self._link(changed)
            if self._first_change is None:
                self._first_change = changed[:, :1].clone()
            if self.fixed:
                changed = self._first_change.expand_as(changed)
            edited = changed if p.source == "change" else torch.maximum(edited, changed)
        soft = soft_edit_mask(edited, dilate=p.dilate, blur=p.blur)
        edit = edited.to(soft.dtype) if self.fixed else soft
        first = self._frames_seen == 0
        self._frames_seen += len(result)
        blended = blend_known(out, ref, edit, keep_first=first)
        pixels = blended[0].round().clamp(0, 255).to(torch.uint8)
        return rearrange(pixels, "t c h w -> t h w c").numpy()

    def _link(self, changed: torch.Tensor) -> torch.Tensor:
        """``link_to_first_frame`` over the whole video so far, for this chunk's frames.

        The chain carries one mask between frames: the *base* (the frame's kept region, or when
        it kept nothing, the previous base grown by ``link_radius``); the next frame searches in
        the base grown by ``link_radius``. Putting the previous chunk's last base in front as a
        frame 0 (kept as it is) continues the chain exactly.
        """
        r = self.preserve.link_radius
        if self._link_base is not None:
            base = torch.from_numpy(self._link_base).to(changed)[None, None]
            kept = link_to_first_frame(torch.cat([base, changed], dim=1), r)[:, 1:]
        else:
            kept = link_to_first_frame(changed, r)
        grow = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        base = self._link_base
        for frame in (kept[0].cpu().numpy() > 0).astype(np.uint8):
            base = frame if base is None or frame.any() else cv2.dilate(base, grow)
        self._link_base = base
        return kept
