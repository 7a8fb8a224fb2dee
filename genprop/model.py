"""GenPropModel: I2V backbone + Selective Content Encoder + Mask Prediction Decoder + task
embedding.

Forward pass (one denoising step)::

    tokens = backbone.patch_embed([x_t, mask, first_latent])
    cond   = backbone.condition(t, text, extra=task_embedding[task])     # task added to timestep
    inj    = SCE([content, mask, first_latent], tokens, cond)            # N injections
    for k, block in enumerate(backbone.blocks):
        tokens = block(tokens) + injection_weight * inj[k]  (k < N)
    velocity = backbone.final(tokens);  mask_logits = MPD(tokens before the last block)
    g = content gate(MPD block output);   velocity = ContentGate.blend(velocity, g, x_t, content, t)

With ``content=None`` (stage 1, "i2v") it is the plain backbone: no SCE, no MPD, no task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genprop.backbones import build_backbone
from genprop.backbones.base import Conditioning
from genprop.codec import build_codec
from genprop.configs import GenPropConfig
from genprop.content_encoder import SelectiveContentEncoder
from genprop.content_gate import ContentGate
from genprop.mask_decoder import MaskPredictionDecoder
from genprop.tasks import TASKS
from genprop.text import build_text_encoder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
_NOT_SAVED = ("text_encoder.",)  # frozen text encoders are rebuilt from their config / folder


@dataclass
class GenPropOutput:
    """Result of one forward pass.

    Attributes:
        velocity: (B, T', C, h, w) predicted flow velocity (noise - x0).
        mask_logits: (B, T', h, w) MPD logits, or None (no content, or ``predict_mask=False``).
        injections: SCE injections (unscaled), N tensors (B, N_tok, D); empty without content.
        tokens: (B, N_tok, D) the backbone's embedded input tokens (reused by L_grad).
        cond: The step's conditioning (reused by L_grad).
        gate: (B, T', C, h, w) the content gate's copy weights g (scaled by the strength and
            the injection weight), or None (no content, or no gate in the config).
        gate_logits: (B, T', C, h, w) the gate's keep logits (supervised in training), or None.
        generator_velocity: (B, T', C, h, w) the generator's own velocity before the content gate
            (equal to ``velocity`` without a gate); the region-aware loss is computed on it.
    """

    velocity: torch.Tensor
    mask_logits: torch.Tensor | None
    injections: list[torch.Tensor]
    tokens: torch.Tensor
    cond: Conditioning
    gate: torch.Tensor | None = None
    gate_logits: torch.Tensor | None = None
    generator_velocity: torch.Tensor | None = None


class GenPropModel(nn.Module):
    """The GenProp model (see module docstring). Build with :meth:`from_config`."""

    def __init__(self, config: GenPropConfig, *, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.codec = build_codec(config.codec, load_weights=load_weights)
        self.codec.check_size(config.height, config.width)
        self.latent_frames = self.codec.latent_frames(config.num_frames)
        self.text_encoder = build_text_encoder(config.text)
        self.backbone = build_backbone(
            config,
            latent_channels=self.codec.latent_channels,
            mask_channels=self.codec.temporal_factor,
            load_weights=load_weights,
        )
        if self.text_encoder.dim != self.backbone.text_dim:
            raise ValueError(
                f"config.text.dim: encoder gives {self.text_encoder.dim}, "
                f"backbone expects {self.backbone.text_dim}"
            )
        self.content_encoder = SelectiveContentEncoder(self.backbone, config.sce_blocks)
        self.mask_decoder = MaskPredictionDecoder(self.backbone)
        self.content_gate = ContentGate(self.backbone) if config.content_gate else None
        # One row per task + a "null task" row for CFG dropout; zero-init so init == backbone.
        self.task_embedding = nn.Embedding(len(TASKS) + 1, self.backbone.dim)
        nn.init.zeros_(self.task_embedding.weight)

    @classmethod
    def from_config(cls, config: GenPropConfig) -> GenPropModel:
        """Build a model (pretrained backbone/VAE weights loaded from local folders if set)."""
        return cls(config)

    @property
    def device(self) -> torch.device:
        """Device of the backbone's parameters."""
        return next(self.backbone.parameters()).device

    # ---------------------------------------------------------------- conditioning helpers
    def encode_prompts(
        self, prompts: list[str] | None, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (None = all empty) -> text embeddings (B, L, text_dim), mask (B, L)."""
        prompts = [""] * batch if prompts is None else list(prompts)
        if len(prompts) != batch:
            raise ValueError(f"prompt: {len(prompts)} prompts for a batch of {batch}")
        emb, mask = self.text_encoder(prompts)
        return emb.to(self.device), mask.to(self.device)

    def encode_first_frame(self, first: torch.Tensor, num_frames: int) -> torch.Tensor:
        """First frame (B, 3, H, W) -> I2V condition latent: codec of ``[v_1, 0, ..., 0]``."""
        video = torch.zeros(
            first.shape[0], num_frames, *first.shape[1:], dtype=first.dtype, device=first.device
        )
        video[:, 0] = first
        return self.codec.encode(video)

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        first_latent: torch.Tensor,
        *,
        content: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        injection_weight: float = 1.0,
        predict_mask: bool = True,
    ) -> GenPropOutput:
        """One denoising step.

        Args:
            x_t: (B, T', C, h, w) noisy latents.
            t: (B,) flow time in [0, 1] (1 = pure noise).
            first_latent: (B, T', C, h, w) from :meth:`encode_first_frame`.
            content: (B, T', C, h, w) content-video latents for the SCE, or None (plain I2V).
            task: (B,) long task indices (``NULL_TASK`` = no task), or None.
            context, context_mask: text from :meth:`encode_prompts`, or None.
            injection_weight: Scale of all SCE injections and of the content gate, in [0, 1].
            predict_mask: Run the MPD head (only with content); False skips it (L_MPD weight 0).
                The MPD's block still runs when the content gate needs it.
        """
        bb = self.backbone
        inp = bb.i2v_input(x_t, first_latent)
        tokens = bb.patch_embedder(inp)
        extra = None if task is None else self.task_embedding(task)
        cond = bb.condition(t, bb.token_grid(inp), context, context_mask, extra)
        injections: list[torch.Tensor] = []
        if content is not None:
            content_input = bb.i2v_input(content, first_latent)
            injections = self.content_encoder(bb, content_input, tokens, cond)
        x = tokens
        penultimate = x
        for k, block in enumerate(bb.blocks):
            if k == bb.num_blocks - 1:
                penultimate = x
            x = bb.apply_block(block, x, cond)
            if k < len(injections):
                x = x + injection_weight * injections[k]
        velocity = generator_velocity = bb.to_velocity(bb.final(x, cond), x_t, t)
        gate = gate_logits = mask_logits = None
        use_gate = content is not None and self.content_gate is not None
        if content is not None and (predict_mask or use_gate):
            mpd_features = self.mask_decoder.features(bb, penultimate, cond)
            if predict_mask:
                mask_logits = self.mask_decoder.logits(mpd_features, cond)
            if use_gate:
                gate_logits = self.content_gate(mpd_features, cond)
                gate = self.content_gate.weights(gate_logits, injection_weight)
                velocity = ContentGate.blend(velocity, gate, x_t, content, t, t_min=bb.x0_t_min)
        return GenPropOutput(
            velocity, mask_logits, injections, tokens, cond, gate, gate_logits, generator_velocity
        )

    # ---------------------------------------------------------------- training helpers
    def freeze_backbone(self) -> None:
        """Stop gradients into the backbone (the paper freezes the pretrained I2V model)."""
        self.backbone.requires_grad_(False)

    def trainable_parameters(
        self, stage: str = "genprop", train_backbone: bool = False
    ) -> list[nn.Parameter]:
        """Parameters to optimise: stage "i2v" = backbone; "genprop" = SCE, MPD, task embedding,
        content gate (+ backbone when ``train_backbone``)."""
        if stage == "i2v":
            return list(self.backbone.parameters())
        if stage != "genprop":
            raise ValueError(f"stage: expected 'i2v' or 'genprop', got {stage!r}")
        params = [
            *self.content_encoder.parameters(),
            *self.mask_decoder.parameters(),
            *self.task_embedding.parameters(),
            *(self.content_gate.parameters() if self.content_gate is not None else ()),
        ]
        if train_backbone:
            params += list(self.backbone.parameters())
        return params

    @torch.no_grad()
    def reset_genprop_modules(self) -> None:
        """Re-copy the backbone into SCE and MPD; zero the injections, task embedding and gate."""
        self.content_encoder.reset_from(self.backbone)
        self.mask_decoder.reset_from(self.backbone)
        nn.init.zeros_(self.task_embedding.weight)
        if self.content_gate is not None:
            self.content_gate.reset()

    @torch.no_grad()
    def load_backbone_from(self, source: str | Path | GenPropModel) -> None:
        """Initialise stage 2 from a stage-1 export: copy its backbone (and codec) weights, then
        re-copy them into the SCE and MPD (:meth:`reset_genprop_modules`).

        Raises:
            ValueError: If the source's backbone does not have this model's architecture.
        """
        src = source if isinstance(source, GenPropModel) else GenPropModel.from_pretrained(source)
        try:
            self.backbone.load_state_dict(src.backbone.state_dict())
            self.codec.load_state_dict(src.codec.state_dict())
        except RuntimeError as err:
            raise ValueError(f"load_backbone_from({source!r}): backbone mismatch: {err}") from err
        self.reset_genprop_modules()

    # ---------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"format": "genprop", "version": FORMAT_VERSION, **self.config.to_dict()}
        (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        state = {
            k: v.detach().contiguous().cpu()
            for k, v in self.state_dict().items()
            if not k.startswith(_NOT_SAVED)
        }
        save_file(state, str(out / WEIGHTS_NAME))
        return out

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu"
    ) -> GenPropModel:
        """Load a model written by :meth:`save_pretrained`.

        Raises:
            FileNotFoundError: If ``config.json`` or ``model.safetensors`` is missing.
            ValueError: If the config is not a GenProp config or weights do not match it.
        """
        folder = Path(directory)
        cfg_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for path in (cfg_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing (expected a GenProp save_pretrained folder)"
                )
        try:
            meta = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{cfg_path}: not valid JSON ({err})") from err
        if meta.pop("format", None) != "genprop":
            raise ValueError(f"{cfg_path}: field 'format' must be 'genprop'")
        version = meta.pop("version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"{cfg_path}: field 'version' is {version}, expected {FORMAT_VERSION}")
        model = cls(GenPropConfig.from_dict(meta), load_weights=False)
        state = load_file(str(weights_path))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(_NOT_SAVED)]
        if missing or unexpected:
            raise ValueError(
                f"{weights_path}: weights do not match config (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]})"
            )
        return model.to(device)
