"""GenProp: Generative Video Propagation (CVPR 2025) as a plain PyTorch library.

Tensor conventions: videos (B, T, 3, H, W) float in [-1, 1]; first frame (B, 3, H, W); masks
(B, T, H, W) float in [0, 1]; task (B,) long index into :data:`TASKS`; prompts list[str] or None.
"""

from contracts.tasks import NULL_TASK, TASKS, TRACKING_PROMPT, task_index
from genprop.backbones import Backbone, Conditioning, TinyDiT, build_backbone
from genprop.configs import (
    PRESETS,
    CodecConfig,
    DiTConfig,
    GenPropConfig,
    TextConfig,
    WanConfig,
    preset,
)
from genprop.inference.propagate import PropagationResult, propagate
from genprop.inference.sampler import sample_latents
from genprop.losses import CFGDropout, training_losses
from genprop.modeling.codec import DiffusersVAECodec, LatentCodec, SpaceToDepthCodec, build_codec
from genprop.modeling.content_encoder import SelectiveContentEncoder
from genprop.modeling.mask_decoder import MaskPredictionDecoder, upsample_masks
from genprop.modeling.model import GenPropModel, GenPropOutput
from genprop.modeling.text import HashingTextEncoder, TransformersTextEncoder, build_text_encoder
from genprop.region_aware_loss import LossWeights
from genprop.scale.flops import count_parameters, estimate_flops, model_report
from genprop.video_batch import VideoBatch

__all__ = [
    "NULL_TASK",
    "PRESETS",
    "TASKS",
    "TRACKING_PROMPT",
    "Backbone",
    "CFGDropout",
    "CodecConfig",
    "Conditioning",
    "DiTConfig",
    "DiffusersVAECodec",
    "GenPropConfig",
    "GenPropModel",
    "GenPropOutput",
    "HashingTextEncoder",
    "LatentCodec",
    "LossWeights",
    "MaskPredictionDecoder",
    "PropagationResult",
    "SelectiveContentEncoder",
    "SpaceToDepthCodec",
    "TextConfig",
    "TinyDiT",
    "TransformersTextEncoder",
    "VideoBatch",
    "WanConfig",
    "build_backbone",
    "build_codec",
    "build_text_encoder",
    "count_parameters",
    "estimate_flops",
    "model_report",
    "preset",
    "propagate",
    "sample_latents",
    "task_index",
    "training_losses",
    "upsample_masks",
]
