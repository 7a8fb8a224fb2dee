"""CLIP-T and CLIP-I (the paper's semantic metrics) with a CLIP model from a local folder.

- ``CLIP_T``: mean over output frames of the cosine similarity between the frame's CLIP image
  embedding and the case prompt's CLIP text embedding (text alignment of the edit).
- ``CLIP_I``: mean over output frames of the cosine similarity between the frame's embedding and
  the edited first frame's embedding (how well the edit is kept over time).

The folder is a Hugging Face ``CLIPModel`` checkpoint (``config.json`` + weights + tokenizer and
image-processor files), e.g. a local copy of ``openai/clip-vit-base-patch32``. Nothing is
downloaded: loading uses ``local_files_only=True``; a missing or incomplete folder raises
:class:`ClipUnavailableError` with the reason, and ``genprop-eval`` then skips the CLIP metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CLIP_BATCH = 16  # frames per forward pass


class ClipUnavailableError(RuntimeError):
    """No usable CLIP model in the given folder; the message says why."""


class ClipScorer:
    """A CLIP model and its preprocessing, loaded from a local folder.

    Args:
        folder: local Hugging Face CLIP folder.
        device: torch device for the forward passes.
    """

    def __init__(self, folder: str | Path, *, device: str = "cpu") -> None:
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ClipUnavailableError(
                f"{folder}: no config.json; --clip must be a local CLIP folder"
            )
        try:
            from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

            self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.image_processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ClipUnavailableError(f"{folder}: cannot load a CLIP model ({e})") from e
        self.device = device

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """``(N, H, W, 3)`` uint8 frames -> ``(N, D)`` L2-normalised embeddings."""
        chunks = []
        for i in range(0, len(frames), CLIP_BATCH):
            batch = list(frames[i : i + CLIP_BATCH])
            pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            pooled = self.model.vision_model(pixel_values=pixels.to(self.device)).pooler_output
            chunks.append(self.model.visual_projection(pooled))
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)

    @torch.no_grad()
    def text_embedding(self, text: str) -> torch.Tensor:
        """A prompt -> ``(D,)`` L2-normalised embedding."""
        limit = self.model.config.text_config.max_position_embeddings  # 77 for real CLIP
        tokens = self.tokenizer(
            [text], padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )
        tokens = {
            k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")
        }
        pooled = self.model.text_model(**tokens).pooler_output
        return torch.nn.functional.normalize(self.model.text_projection(pooled), dim=-1)[0]

    def text_similarity(self, frames: np.ndarray, prompt: str) -> float:
        """CLIP-T of ``(N, H, W, 3)`` uint8 frames against ``prompt``."""
        return float((self.image_embeddings(frames) @ self.text_embedding(prompt)).mean())

    def image_similarity(self, frames: np.ndarray, reference: np.ndarray) -> float:
        """CLIP-I of ``(N, H, W, 3)`` uint8 frames against the ``(H, W, 3)`` reference image."""
        ref = self.image_embeddings(reference[None])[0]
        return float((self.image_embeddings(frames) @ ref).mean())
