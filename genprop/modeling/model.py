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

Two-expert backbones (Wan2.2-I2V-A14B): ``backbone``/``content_encoder``/``mask_decoder`` are the
high-noise expert's, ``expert_2`` holds the low-noise expert with its own SCE and MPD, and each
step runs the expert its timestep routes to (:mod:`genprop.modeling.experts`). Backbones with image
tokens
(Wan2.1-I2V): ``image_encoder`` turns the first frame into CLIP tokens (:meth:`encode_image`); the
backbone and the SCE's copied blocks both read them (the SCE blocks are copies of blocks trained
with them in their context, and the SCE must see the same first frame the generator follows).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from contracts.jsonfile import read_json_object
from contracts.tasks import TASKS
from genprop.backbones import build_backbone
from genprop.backbones.base import Conditioning
from genprop.backbones.registry import family_of
from genprop.configs import GenPropConfig
from genprop.modeling.codec import build_codec
from genprop.modeling.content_encoder import SelectiveContentEncoder
from genprop.modeling.content_gate import ContentGate
from genprop.modeling.experts import (
    HIGH_NOISE,
    ExpertModules,
    LowNoiseExpert,
    check_train_experts,
    expert_for_times,
)
from genprop.modeling.mask_decoder import MaskPredictionDecoder
from genprop.modeling.model_paths import confine_paths, relative_paths
from genprop.modeling.text import build_text_encoder
from genprop.modeling.unbuilt_encoders import UnbuiltCodec, UnbuiltEncoder, unbuilt_codec
from genprop.scale.sequence_parallel import NO_SEQUENCE_PARALLEL, SequenceParallel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
# State-dict key prefixes a model folder leaves out: the frozen text and image encoders are
# rebuilt from their config / folder (by every loader of the format, sharded ones included).
NOT_SAVED_PREFIXES = ("text_encoder.", "image_encoder.")


@dataclass
class GenPropOutput:
    """Result of one forward pass.

    Attributes:
        velocity: (B, T', C, h, w) predicted flow velocity (noise - x0).
        mask_logits: (B, T', h, w) MPD logits, or None (no content, or ``predict_mask=False``).
        injections: SCE injections (unscaled), N tensors (B, N_tok, D); empty without content.
            Under sequence parallelism this rank's token shard of each (B, N_pad / size, D).
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
    """The GenProp model (see module docstring). Build with :meth:`from_config`.

    With ``encoders=False`` the VAE, text encoder and image encoder are not built (stand-ins from
    :mod:`genprop.modeling.unbuilt_encoders` keep their geometry and raise when called): for
    training from
    precomputed latents (:class:`genprop.modeling.latents.EncodedBatch`). A parameter-free codec
    (space-to-depth) is built either way.
    """

    def __init__(
        self, config: GenPropConfig, *, load_weights: bool = True, encoders: bool = True
    ) -> None:
        super().__init__()
        self.config = config
        if encoders or config.codec.kind != "wan_vae":
            self.codec = build_codec(config.codec, load_weights=load_weights)
        else:
            self.codec = unbuilt_codec(config.codec)
        self.codec.check_size(config.height, config.width)
        self.latent_frames = self.codec.latent_frames(config.num_frames)
        if encoders:
            self.text_encoder = build_text_encoder(config.text)
        else:
            self.text_encoder = UnbuiltEncoder("text encoder", config.text.dim)
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
        bcfg = config.backbone
        # Two-expert families (Wan2.2-A14B) switch experts at this flow time; None: one expert.
        self.boundary_ratio = family_of(bcfg).boundary_ratio(bcfg)
        self.expert_2: LowNoiseExpert | None = None
        if self.boundary_ratio is not None:
            second = build_backbone(
                config,
                latent_channels=self.codec.latent_channels,
                mask_channels=self.codec.temporal_factor,
                load_weights=load_weights,
                expert=1,
            )
            self.expert_2 = LowNoiseExpert(second, config.sce_blocks, reference=self.backbone)
        # The experts whose SCE and MPD a training run trains (``set_train_experts``).
        self.train_experts: tuple[int, ...] = check_train_experts("both", self.num_experts)
        self.image_encoder = None
        if self.backbone.image_dim is not None and not encoders:
            self.image_encoder = UnbuiltEncoder("image encoder", self.backbone.image_dim)
        elif self.backbone.image_dim is not None:
            from genprop.modeling.image_encoder import CLIPImageEncoder

            path = getattr(bcfg, "image_encoder_path", None)
            if not path:
                raise ValueError(
                    "config.backbone.image_encoder_path: the transformer reads CLIP image tokens "
                    f"(image_dim {self.backbone.image_dim}); a pipeline folder with "
                    "image_encoder/ and image_processor/ is required"
                )
            self.image_encoder = CLIPImageEncoder(path)
            if self.image_encoder.dim != self.backbone.image_dim:
                raise ValueError(
                    f"{path}/image_encoder/config.json: hidden_size {self.image_encoder.dim}, "
                    f"but the transformer's image_dim is {self.backbone.image_dim}"
                )
        self.content_gate = ContentGate(self.backbone) if config.content_gate else None
        # The ranks this model splits its tokens over (genprop.scale.sequence_parallel.
        # enable_sequence_parallel); none by default.
        self.sequence_parallel: SequenceParallel = NO_SEQUENCE_PARALLEL
        # One row per task + a "null task" row for CFG dropout; zero-init so init == backbone.
        self.task_embedding = nn.Embedding(len(TASKS) + 1, self.backbone.dim)
        nn.init.zeros_(self.task_embedding.weight)

    @classmethod
    def from_config(cls, config: GenPropConfig, *, encoders: bool = True) -> GenPropModel:
        """Build a model (pretrained backbone/VAE weights loaded from local folders if set);
        ``encoders=False`` leaves the VAE, text and image encoders unbuilt (see class doc)."""
        return cls(config, encoders=encoders)

    @property
    def device(self) -> torch.device:
        """Device of the backbone's parameters."""
        return next(self.backbone.parameters()).device

    # ---------------------------------------------------------------- experts and conditioning
    @property
    def num_experts(self) -> int:
        """Backbone experts (each with its own SCE and MPD): 2 for Wan2.2-A14B, else 1."""
        return 1 if self.expert_2 is None else 2

    def set_train_experts(self, choice: str) -> None:
        """Train the SCE and MPD of ``"both"`` experts, or of the ``"high"`` / ``"low"`` noise
        expert only (``model.net.train_experts``; see :mod:`genprop.modeling.experts`).

        Raises:
            ValueError: naming the option, for an unknown choice or one expert of a one-expert
                backbone.
        """
        self.train_experts = check_train_experts(choice, self.num_experts)

    def expert_for(self, t: torch.Tensor) -> int | None:
        """The expert that denoises at fp32 flow times ``t`` (B,); None for one-expert backbones.

        Decide it before anything is cast and pass it as ``expert=`` (see
        :mod:`genprop.modeling.experts`).
        """
        if self.expert_2 is None:
            return None
        return expert_for_times(t, self.boundary_ratio)

    def route(self, t: torch.Tensor, expert: int | None = None) -> ExpertModules:
        """The backbone, SCE and MPD that denoise at flow times ``t`` (B,).

        Args:
            t: (B,) flow times; they choose the expert only when ``expert`` is None.
            expert: The expert decided for this step (0 = high noise, 1 = low noise), or None
                to route from ``t`` (which must then be fp32).

        Raises:
            ValueError: If ``expert`` is not an expert of this backbone, or routing from ``t``
                fails (see :func:`genprop.modeling.experts.expert_for_times`).
        """
        first = ExpertModules(self.backbone, self.content_encoder, self.mask_decoder)
        if expert is None:
            expert = HIGH_NOISE if self.expert_2 is None else self.expert_for(t)
        if isinstance(expert, bool) or expert not in range(self.num_experts):
            raise ValueError(
                f"expert: expected an expert index in [0, {self.num_experts - 1}], got {expert!r}"
            )
        return first if expert == HIGH_NOISE else self.expert_2.modules_for_step()

    @property
    def token_patch(self) -> tuple[int, int]:
        """The backbone's spatial token patch (p_h, p_w) (the same for both experts)."""
        _, ph, pw = self.backbone.patch_size
        return ph, pw

    def checkpoints_activations(self, t: torch.Tensor, expert: int | None = None) -> bool:
        """Whether the backbone denoising at flow times ``t`` (B,) (or expert ``expert``)
        recomputes activations in backward (``gradient_checkpointing``)."""
        return bool(self.route(t, expert).backbone.gradient_checkpointing)

    def encode_image(self, first: torch.Tensor) -> torch.Tensor | None:
        """First frames (B, 3, H, W) in [-1, 1] -> CLIP image tokens (B, N_img, image_dim), or None
        when the backbone takes none."""
        if self.image_encoder is None:
            return None
        return self.image_encoder(first).to(self.device)

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
        image_embeds: torch.Tensor | None = None,
        expert: int | None = None,
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
            image_embeds: (B, N_img, image_dim) from :meth:`encode_image` of the first frame;
                required exactly when the backbone has image tokens (Wan2.1-I2V).
            expert: Two-expert backbones: the expert of this step, decided from fp32 times
                before any cast (:meth:`expert_for`); None routes from ``t`` (fp32 only).
        """
        bb, sce, mpd = self.route(t, expert)
        inp = bb.i2v_input(x_t, first_latent)
        tokens = bb.patch_embedder(inp)
        extra = None if task is None else self.task_embedding(task)
        cond = bb.condition(t, bb.token_grid(inp), context, context_mask, extra, image=image_embeds)
        # Sequence parallelism: the blocks run on this rank's token shard and the heads on the
        # gathered sequence (identities without it; genprop.scale.sequence_parallel).
        sp = self.sequence_parallel
        local = sp.local_condition(cond)
        x = sp.shard(tokens)
        injections: list[torch.Tensor] = []
        if content is not None:
            content_input = bb.i2v_input(content, first_latent)
            injections = sce(bb, content_input, x, local, shard=sp.shard)
        penultimate = x
        for k, block in enumerate(bb.blocks):
            if k == bb.num_blocks - 1:
                penultimate = x
            x = bb.apply_block(block, x, local)
            if k < len(injections):
                x = x + injection_weight * injections[k]
        velocity = bb.to_velocity(bb.final(sp.gather(x, tokens.shape[1]), cond), x_t, t)
        velocity = generator_velocity = bb.pin_first_frame(velocity, x_t, first_latent, t)
        gate = gate_logits = mask_logits = None
        use_gate = content is not None and self.content_gate is not None
        if content is not None and (predict_mask or use_gate):
            mpd_features = sp.gather(mpd.features(bb, penultimate, local), tokens.shape[1])
            if predict_mask:
                mask_logits = mpd.logits(mpd_features, cond)
            if use_gate:
                gate_logits = self.content_gate(mpd_features, cond)
                gate = self.content_gate.weights(gate_logits, injection_weight)
                velocity = ContentGate.blend(velocity, gate, x_t, content, t, t_min=bb.x0_t_min)
        return GenPropOutput(
            velocity, mask_logits, injections, tokens, cond, gate, gate_logits, generator_velocity
        )

    def sce_features(
        self,
        content: torch.Tensor,
        first_latent: torch.Tensor,
        t: torch.Tensor,
        *,
        tokens: torch.Tensor,
        cond: Conditioning,
        expert: int | None = None,
        reduce: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """The SCE's injections for ``content``, in the context of an earlier forward pass.

        What L_grad differentiates (:func:`genprop.region_aware_loss.feature_sensitivity`):
        the features that enter the generator, as :meth:`forward` computes them, for another
        content video, reusing that forward's generator tokens and conditioning.

        Args:
            content: (B, T', C, h, w) content latents (cast to the forward's compute dtype).
            first_latent: (B, T', C, h, w) as given to :meth:`forward`.
            t: (B,) the forward's flow times (they choose the expert unless ``expert`` is given).
            tokens: (B, N_tok, D) the forward's ``GenPropOutput.tokens``.
            cond: the forward's ``GenPropOutput.cond``.
            expert: the forward's expert (see :meth:`forward`).
            reduce: ``reduce(k, features_k)``, computed inside SCE block k's checkpointed step
                instead of returning its features (see :class:`SelectiveContentEncoder`).

        Returns:
            One (B, N_tok, D) tensor per SCE block (unscaled by the injection weight), or with
            ``reduce`` its results. Under sequence parallelism the features are this rank's token
            shard (B, N_pad / size, D), as the forward's injections (reduce them with
            ``reduce`` and a sum over the group, as L_grad does).
        """
        bb, sce, _ = self.route(t, expert)
        content = content.to(tokens.dtype)  # the forward's compute dtype (bf16 under sharding)
        sp = self.sequence_parallel
        content_input = bb.i2v_input(content, first_latent)
        local = sp.local_condition(cond)
        return sce(bb, content_input, sp.shard(tokens), local, reduce=reduce, shard=sp.shard)

    # ---------------------------------------------------------------- training helpers
    def freeze_backbone(self) -> None:
        """Stop gradients into the backbone (the paper freezes the pretrained I2V model)."""
        self.backbone.requires_grad_(False)
        if self.expert_2 is not None:
            self.expert_2.backbone.requires_grad_(False)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the backbone (both experts of a two-expert backbone)."""
        params = list(self.backbone.parameters())
        if self.expert_2 is not None:
            params += list(self.expert_2.backbone.parameters())
        return params

    def trainable_parameters(
        self, stage: str = "genprop", train_backbone: bool = False
    ) -> list[nn.Parameter]:
        """Parameters to optimise: stage "i2v" = backbone; "genprop" = SCE and MPD (of the experts
        in ``train_experts``), task embedding, content gate (+ backbone when ``train_backbone``)."""
        if stage == "i2v":
            return self.backbone_parameters()
        if stage != "genprop":
            raise ValueError(f"stage: expected 'i2v' or 'genprop', got {stage!r}")
        params = [
            *self.task_embedding.parameters(),
            *(self.content_gate.parameters() if self.content_gate is not None else ()),
        ]
        for expert in self.train_experts:  # model.net.train_experts: every expert by default
            _, sce, mpd = self.route(torch.empty(0), expert)
            params += [*sce.parameters(), *mpd.parameters()]
        if train_backbone:
            params += self.backbone_parameters()
        return params

    @torch.no_grad()
    def reset_genprop_modules(self) -> None:
        """Re-copy the backbone into SCE and MPD; zero the injections, task embedding and gate."""
        self.content_encoder.reset_from(self.backbone)
        self.mask_decoder.reset_from(self.backbone)
        if self.expert_2 is not None:
            self.expert_2.content_encoder.reset_from(self.expert_2.backbone)
            self.expert_2.mask_decoder.reset_from(self.expert_2.backbone)
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
            if not isinstance(self.codec, UnbuiltCodec):
                self.codec.load_state_dict(src.codec.state_dict())
            if (self.expert_2 is None) != (src.expert_2 is None):
                raise RuntimeError("one model has two experts, the other has one")
            if self.expert_2 is not None:
                self.expert_2.backbone.load_state_dict(src.expert_2.backbone.state_dict())
        except RuntimeError as err:
            raise ValueError(f"load_backbone_from({source!r}): backbone mismatch: {err}") from err
        self.reset_genprop_modules()

    # ---------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        config = relative_paths(self.config.to_dict(), out)
        if self.config.codec.kind == "learned":
            from genprop.modeling.learned_codec import bundle_codec

            # The learned codec's folder goes inside the model folder, so the folder loads alone.
            config["codec"]["path"] = bundle_codec(self.codec, self.config.codec.path, out)
        meta = {"format": "genprop", "version": FORMAT_VERSION, **config}
        (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        state = {
            k: v.detach().contiguous().cpu()
            for k, v in self.state_dict().items()
            if not k.startswith(NOT_SAVED_PREFIXES)
        }
        save_file(state, str(out / WEIGHTS_NAME))
        return out

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        device: str | torch.device = "cpu",
        paths: Mapping[str, str | Path] | None = None,
        allowed_roots: Sequence[str | Path] = (),
        dtype: torch.dtype = torch.float32,
    ) -> GenPropModel:
        """Load a model written by :meth:`save_pretrained`.

        The config is checked (types, ranges, parameter budget) before anything is built, and
        its folder paths (``text.path``, ...) are confined to ``directory`` (see
        :mod:`genprop.modeling.model_paths`).

        Args:
            directory: the model folder.
            device: where to put the model.
            paths: explicit values for path fields, e.g. ``{"text.path": "/models/umt5"}``.
            allowed_roots: folders outside ``directory`` that the config's paths may point into
                (e.g. the Wan pipeline folder a Wan export reads its text encoder from).
            dtype: ``torch.bfloat16`` casts the weights as they are loaded, except those the
                pretrained backbone keeps in fp32
                (:func:`genprop.modeling.precision.cast_model`); fp32 (default) loads as saved.

        Raises:
            FileNotFoundError: If ``config.json`` or ``model.safetensors`` is missing.
            ValueError: If the config is not a GenProp config, a field is invalid or a path
                leaves the allowed folders (naming the file and field), or the weights do not
                match the config or hold NaN or inf (naming the tensor).
        """
        folder = Path(directory)
        cfg_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for path in (cfg_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing (expected a GenProp save_pretrained folder)"
                )
        meta = read_json_object(cfg_path, what="GenProp config")
        if meta.pop("format", None) != "genprop":
            raise ValueError(f"{cfg_path}: field 'format' must be 'genprop'")
        version = meta.pop("version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"{cfg_path}: field 'version' is {version}, expected {FORMAT_VERSION}")
        try:
            config = GenPropConfig.from_dict(meta)
        except ValueError as err:
            raise ValueError(f"{cfg_path}: {err}") from None
        confine_paths(config, folder, source=cfg_path, paths=paths, allowed_roots=allowed_roots)
        model = cls(config, load_weights=False)
        if dtype != torch.float32:
            from genprop.modeling.precision import cast_model

            # Cast before loading: load_state_dict copies each saved tensor into its cast slot.
            cast_model(model, dtype)
        try:
            state = load_file(str(weights_path))
            missing, unexpected = model.load_state_dict(state, strict=False)
        except (SafetensorError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"{weights_path}: unreadable or mismatched weights ({first})"
            ) from None
        # Weights of a diverged run: refused here rather than propagated into a black video.
        bad = next(
            (k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()), None
        )
        if bad is not None:
            raise ValueError(f"{weights_path}: tensor {bad!r} holds NaN or inf")
        missing = [k for k in missing if not k.startswith(NOT_SAVED_PREFIXES)]
        if (
            config.codec.path is not None
            and missing
            and all(k.startswith("codec.") for k in missing)
        ):
            # Saved by a model trained from precomputed latents (its VAE was never built): the
            # frozen VAE is read from its folder again, like the text and image encoders.
            model.codec = build_codec(config.codec)
            missing = []
        if missing or unexpected:
            raise ValueError(
                f"{weights_path}: weights do not match config (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]})"
            )
        return model.to(device)
