"""The encoder half of a training step: pixel batch -> :class:`EncodedBatch`.

A training step first runs the frozen encoders (VAE on the SCE input, the target and the
first-frame conditioning video, the text encoder on the prompts, CLIP on the first frame for
Wan2.1-I2V) and then the trainable model. :func:`encode_batch` is that first half, on its own, so
its outputs can be computed once and stored (``genprop-cache``) and
:func:`genprop.losses.training_losses` can start from them: the loss from an
:class:`EncodedBatch` equals the loss from the pixel batch it was encoded from.

Guidance dropout needs the empty prompt's embedding; a stored batch carries it in
``empty_context`` / ``empty_context_mask`` (:meth:`EncodedBatch.drop_prompts` swaps it in).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from genprop.modeling.content_gate import gate_target
from genprop.modeling.model import GenPropModel
from genprop.region_aware_loss import latent_mask
from genprop.video_batch import VideoBatch, check_batch_type, tensor_fields

if TYPE_CHECKING:
    from genprop.configs import GenPropConfig
    from genprop.modeling.codec import LatentCodec


class Encoders(Protocol):
    """What :func:`encode_batch` needs: a :class:`genprop.modeling.model.GenPropModel` (built with
    its
    encoders) or :class:`LatentEncoders`."""

    config: GenPropConfig
    codec: LatentCodec

    def encode_first_frame(self, first: torch.Tensor, num_frames: int) -> torch.Tensor: ...
    def encode_prompts(
        self, prompts: list[str] | None, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
    def encode_image(self, first: torch.Tensor) -> torch.Tensor | None: ...


@dataclass
class EncodedBatch:
    """Everything the trainable part of a step reads, already encoded.

    Attributes:
        target: (B, T', C, h, w) VAE latents of the target video (x0).
        first_latent: (B, T', C, h, w) VAE latents of ``[v_1, 0, ..., 0]`` (the I2V conditioning;
            the backbone adds its mask / first-frame layout to it).
        context: (B, L, D) prompt embeddings; context_mask: (B, L) bool.
        task: (B,) long task indices.
        content: (B, T', C, h, w) VAE latents of the SCE input, or None (stage "i2v" only).
        mask: (B, T', h, w) the latent-grid edit mask m̃, or None (stage "i2v" only).
        image_embeds: (B, N_img, image_dim) CLIP tokens of the first frame, or None.
        gate_keep: (B, T', C, h, w) content-gate target, for models with a content gate, else None.
        empty_context: (L, D) embedding of the empty prompt (guidance dropout), or None.
        empty_context_mask: (L,) bool, with ``empty_context``.
    """

    target: torch.Tensor
    first_latent: torch.Tensor
    context: torch.Tensor
    context_mask: torch.Tensor
    task: torch.Tensor
    content: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    gate_keep: torch.Tensor | None = None
    empty_context: torch.Tensor | None = None
    empty_context_mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        """B."""
        return int(self.target.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields that are set, by name."""
        return tensor_fields(self)

    def to(self, device: torch.device | str, **kwargs: Any) -> EncodedBatch:
        """All tensors moved to ``device`` (dtypes kept; ``kwargs`` as ``Tensor.to``)."""
        moved = {
            f.name: None if v is None else v.to(device, **kwargs)
            for f in dataclasses.fields(self)
            for v in (getattr(self, f.name),)
        }
        return EncodedBatch(**moved)

    def index(self, i: int) -> EncodedBatch:
        """Row ``i`` as a batch of one (the empty prompt kept)."""
        rows = {
            f.name: None if v is None else v[i : i + 1]
            for f in dataclasses.fields(self)
            if not f.name.startswith("empty_")
            for v in (getattr(self, f.name),)
        }
        return EncodedBatch(
            **rows, empty_context=self.empty_context, empty_context_mask=self.empty_context_mask
        )

    def drop_prompts(self, drop: torch.Tensor) -> EncodedBatch:
        """A copy whose rows ``drop`` (B,) bool use the empty prompt's embedding.

        Raises:
            ValueError: If a row is dropped and the batch carries no ``empty_context``.
        """
        if not bool(drop.any()):
            return self
        if self.empty_context is None or self.empty_context_mask is None:
            raise ValueError("EncodedBatch: guidance dropout needs empty_context (none stored)")
        rows = drop.to(self.context.device)[:, None]
        context = torch.where(
            rows[..., None], self.empty_context.to(self.context.dtype), self.context
        )
        mask = torch.where(rows, self.empty_context_mask, self.context_mask)
        return dataclasses.replace(self, context=context, context_mask=mask)


class LatentEncoders(nn.Module):
    """The frozen encoders of a model config without its backbone (what ``genprop-cache`` runs).

    Same codec, text encoder and image encoder as ``GenPropModel.from_config(config)`` builds,
    and the same ``encode_*`` methods, so :func:`encode_batch` gives the same tensors.
    """

    def __init__(self, config: GenPropConfig) -> None:
        super().__init__()
        from genprop.modeling.codec import build_codec
        from genprop.modeling.text import build_text_encoder

        self.config = config
        self.codec = build_codec(config.codec)
        self.codec.check_size(config.height, config.width)
        self.latent_frames = self.codec.latent_frames(config.num_frames)
        self.text_encoder = build_text_encoder(config.text)
        self.image_encoder: nn.Module | None = None
        path = getattr(config.backbone, "image_encoder_path", None)
        if path:
            from genprop.modeling.image_encoder import CLIPImageEncoder

            self.image_encoder = CLIPImageEncoder(path)
        # Where outputs go (GenPropModel uses its backbone's device).
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """Device of the encoders."""
        return self.anchor.device

    encode_first_frame = GenPropModel.encode_first_frame
    encode_prompts = GenPropModel.encode_prompts
    encode_image = GenPropModel.encode_image


def encode_batch(
    model: Encoders,
    batch: VideoBatch,
    *,
    stage: str = "genprop",
    drop_prompts: torch.Tensor | None = None,
) -> EncodedBatch:
    """Run the frozen encoders on a pixel batch (no gradients).

    Args:
        model: the model (or encoders) whose codec, text and image encoders to use.
        batch: the pixel batch; stage "genprop" needs its ``sce``, ``mask`` and ``task``.
        stage: "genprop" also encodes the SCE input and the mask; "i2v" leaves them None.
        drop_prompts: (B,) bool: rows encoded with the empty prompt instead (guidance dropout).

    Returns:
        The :class:`EncodedBatch` on the encoders' device (``empty_context`` not set).

    Raises:
        TypeError: If ``batch`` is not a :class:`VideoBatch`.
        ValueError: naming the field of ``batch`` that is missing or mis-shaped.
    """
    check_batch_type(batch, VideoBatch)
    batch.validate(stage)
    device = encoder_device(model)
    target = batch.target.to(device)
    first = batch.first.to(device)
    b, num_frames = target.shape[:2]
    prompts = list(batch.prompt or [""] * b)
    if drop_prompts is not None:
        prompts = ["" if d else p for p, d in zip(prompts, drop_prompts.tolist(), strict=True)]
    # Stage "i2v" may have no task.
    task = torch.zeros(b, dtype=torch.long) if batch.task is None else batch.task
    codec = model.codec
    with torch.no_grad():
        x0 = codec.encode(target)
        first_latent = model.encode_first_frame(first, num_frames)
        image_embeds = model.encode_image(first)
        context, context_mask = model.encode_prompts(prompts, b)
        content = m = keep = None
        if stage == "genprop":
            content = codec.encode(batch.sce.to(device))
            pixel_mask = batch.mask.to(device)
            m = latent_mask(
                pixel_mask,
                spatial_factor=codec.spatial_factor,
                temporal_factor=codec.temporal_factor,
            )
            if model.config.content_gate:
                keep = gate_target(pixel_mask, codec, m)
    return EncodedBatch(
        target=x0,
        first_latent=first_latent,
        context=context,
        context_mask=context_mask,
        task=task.to(device=device, dtype=torch.long),
        content=content,
        mask=m,
        image_embeds=image_embeds,
        gate_keep=keep,
    )


def batch_size(batch: VideoBatch | EncodedBatch) -> int:
    """B of a pixel or an encoded batch."""
    return batch.batch_size


def encoder_device(model: Encoders) -> torch.device:
    """Device the encoders' outputs land on (the model's device)."""
    return model.device  # type: ignore[attr-defined]
