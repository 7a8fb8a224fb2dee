"""DINOv2 patch features from a local model folder, preprocessed as the PROVE scorer does.

The folder (``--dinov2 DIR``) is a Hugging Face DINOv2 checkpoint (``config.json``, weights,
``preprocessor_config.json``); PROVE uses ``facebook/dinov2-giant``. It is loaded with
``AutoModel.from_pretrained(DIR, local_files_only=True)``: nothing is downloaded, and a missing or
incomplete folder raises :class:`DinoUnavailableError` with the reason.

Preprocessing follows PROVE's ``DinoPredictor.set_image`` (github.com/xiaomi-research/prove,
``utils/predictors.py``, Apache-2.0): the image is resized (bilinear) so its longer side is
:data:`TARGET_SIZE` pixels, padded at the bottom and right to a multiple of the 14-pixel patch with
the RGB colour :data:`PAD_COLOR`, then rescaled and normalised by the folder's image processor
without its own resize or crop. The patch tokens of ``last_hidden_state`` (the CLS token dropped)
form the feature grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

TARGET_SIZE = 448  # longer side of the image fed to DINOv2
PATCH = 14  # DINOv2 patch size
PAD_COLOR = (123, 116, 103)  # the ImageNet mean in 0..255, PROVE's padding value


class DinoUnavailableError(RuntimeError):
    """No usable DINOv2 model in the given folder; the message says why."""


@dataclass(frozen=True)
class Geometry:
    """How an ``(H, W)`` image is fitted to the DINOv2 input: resized, then padded."""

    resized: tuple[int, int]  # (new_H, new_W)
    pad: tuple[int, int]  # (pad_h, pad_w), added at the bottom / right

    @property
    def grid(self) -> tuple[int, int]:
        """``(H_feat, W_feat)``: the patch grid of the padded image."""
        return (
            (self.resized[0] + self.pad[0]) // PATCH,
            (self.resized[1] + self.pad[1]) // PATCH,
        )


def geometry(height: int, width: int) -> Geometry:
    """The resize and padding of an image of ``height`` x ``width`` (PROVE's ``set_image``)."""
    scale = TARGET_SIZE / max(height, width)
    new_h, new_w = int(height * scale), int(width * scale)
    return Geometry(
        (new_h, new_w), ((PATCH - new_h % PATCH) % PATCH, (PATCH - new_w % PATCH) % PATCH)
    )


def fit_image(image: np.ndarray) -> tuple[np.ndarray, Geometry]:
    """``(H, W, 3)`` uint8 RGB -> the resized, padded image and its :class:`Geometry`."""
    geo = geometry(*image.shape[:2])
    resized = cv2.resize(image, geo.resized[::-1], interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(
        resized, 0, geo.pad[0], 0, geo.pad[1], cv2.BORDER_CONSTANT, value=PAD_COLOR
    )
    return padded, geo


def fit_mask(mask: np.ndarray, geo: Geometry) -> torch.Tensor:
    """An ``(H, W)`` mask (any numeric values) -> ``(H_feat, W_feat)`` float on the patch grid.

    Nearest-neighbour resize, zero padding, then a max-pool to the grid: a patch takes the largest
    mask value it covers (PROVE's ``adaptive_max_pool2d``).
    """
    resized = cv2.resize(
        mask.astype(np.float32), geo.resized[::-1], interpolation=cv2.INTER_NEAREST
    )
    padded = cv2.copyMakeBorder(resized, 0, geo.pad[0], 0, geo.pad[1], cv2.BORDER_CONSTANT, value=0)
    pooled = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(padded)[None, None], geo.grid)
    return pooled[0, 0]


class DinoFeatures:
    """A DINOv2 model and its image processor, loaded from a local folder.

    Args:
        folder: local Hugging Face DINOv2 folder.
        device: torch device for the forward passes.
    """

    def __init__(self, folder: str | Path, *, device: str = "cpu") -> None:
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise DinoUnavailableError(
                f"{folder}: no config.json; --dinov2 must be a local DINOv2 folder"
            )
        try:
            from transformers import AutoImageProcessor, AutoModel

            self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise DinoUnavailableError(f"{folder}: cannot load a DINOv2 model ({e})") from e
        self.device = device

    @torch.no_grad()
    def __call__(self, padded: np.ndarray) -> torch.Tensor:
        """A padded ``(Hp, Wp, 3)`` uint8 image from :func:`fit_image` -> ``(C, Hp/14, Wp/14)``
        float32 patch features, on the model's device (the MMDs are computed there too)."""
        inputs = self.processor(
            images=padded, return_tensors="pt", do_resize=False, do_center_crop=False
        )
        hidden = self.model(pixel_values=inputs["pixel_values"].to(self.device)).last_hidden_state
        h, w = padded.shape[0] // PATCH, padded.shape[1] // PATCH
        tokens = hidden[0, 1:]  # drop CLS
        if tokens.shape[0] != h * w:
            raise DinoUnavailableError(
                f"DINOv2 returned {tokens.shape[0]} patch tokens for a {h}x{w} grid "
                "(a model with register tokens is not what PROVE uses)"
            )
        return tokens.T.reshape(-1, h, w).float()
