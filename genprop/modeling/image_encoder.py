"""The frozen CLIP image encoder of Wan2.1-I2V: first frame -> image tokens.

As diffusers' ``WanImageToVideoPipeline.encode_image``: ``image_processor`` (a
``CLIPImageProcessor``, here its PIL backend ``CLIPImageProcessorPil``, which transformers also
picks without torchvision: resize, centre crop 224, CLIP normalisation) then ``image_encoder`` (a
``CLIPVisionModel``, ViT-H/14) with ``output_hidden_states=True``; the tokens are the
*penultimate* layer's hidden states, (B, 257, 1280) for ViT-H/14 at 224 px. Loaded from a local
pipeline folder only (``image_encoder/`` + ``image_processor/``), never exported (like the text
encoder: export folders read it from the same path again).
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import nn

# Image tokens per first frame: ViT-H/14 at 224 px, 16 x 16 patches + the class token.
CLIP_TOKENS = 257


class CLIPImageEncoder(nn.Module):
    """``image_processor/`` + ``image_encoder/`` of a Wan2.1-I2V folder, frozen."""

    def __init__(self, path: str) -> None:
        super().__init__()
        import transformers
        from transformers import AutoConfig, CLIPImageProcessorPil

        root = Path(path)
        for sub in ("image_encoder", "image_processor"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(
                    f"{root / sub}: missing (a Wan transformer with image_dim needs the CLIP "
                    "image_encoder/ and image_processor/ of its pipeline folder)"
                )
        self.processor = CLIPImageProcessorPil.from_pretrained(
            root / "image_processor", local_files_only=True
        )
        config = AutoConfig.from_pretrained(root / "image_encoder", local_files_only=True)
        arch = (config.architectures or ["CLIPVisionModel"])[0]
        model_cls = getattr(transformers, arch, None)
        if model_cls is None or not arch.startswith("CLIPVision"):
            raise ValueError(
                f"{root / 'image_encoder' / 'config.json'}: architectures {arch!r}, expected "
                "CLIPVisionModel (or CLIPVisionModelWithProjection)"
            )
        self.encoder = model_cls.from_pretrained(root / "image_encoder", local_files_only=True)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.dim = int(config.hidden_size)

    @torch.no_grad()
    def forward(self, first: torch.Tensor) -> torch.Tensor:
        """First frames (B, 3, H, W) in [-1, 1] -> image tokens (B, N_img, dim) float32."""
        pixels = ((first.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        images = list(rearrange(pixels, "b c h w -> b h w c").cpu().numpy())
        param = next(self.encoder.parameters())
        inputs = self.processor(images=images, return_tensors="pt")
        values = inputs.pixel_values.to(device=param.device, dtype=param.dtype)
        out = self.encoder(pixel_values=values, output_hidden_states=True)
        return out.hidden_states[-2].float()
