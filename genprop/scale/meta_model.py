"""Build a GenProp model on the ``meta`` device from configs alone (no weight file is read).

A planning machine (a laptop, a login node) has neither the GPU memory nor, often, the weights of a
14B model. :func:`build_meta_model` needs only the ``config.json`` files of a pipeline folder
(``transformer/``, ``transformer_2/``, ``vae/``, ``text_encoder/``, ``image_encoder/``): the
transformer and VAE configs are read into the GenProp config (as ``from_pretrained`` would store
them), and the frozen text and image encoders, whose outputs are all a training step needs from
them, are stood in by modules that give tensors of the right shape; their parameters are counted
from their own configs (:class:`MetaModel`).

A folder with only the ``*.json`` files of a published pipeline (e.g. ``huggingface-cli download
REPO --include "*.json"``) is therefore enough to plan. :func:`write_config_folder` writes one from
a dict of sub-folder configs (the published configs kept as test fixtures)::

    python -m genprop.scale.meta_model tests/genprop/wan_configs/wan2.1-i2v-14b-480p.json OUT_DIR
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from contracts.jsonfile import read_json_object
from genprop.backbones.registry import family_of
from genprop.configs import GenPropConfig, TextConfig
from genprop.modeling.learned_codec import CONFIG_NAME as CODEC_CONFIG
from genprop.modeling.learned_codec import check_architecture, read_codec_config
from genprop.modeling.model import GenPropModel

# google/umt5-xxl's encoder, the text encoder of every Wan2.x pipeline (diffusers'
# scripts/convert_wan_to_diffusers.py: UMT5EncoderModel.from_pretrained("google/umt5-xxl")).
UMT5_XXL_ENCODER: dict[str, object] = {
    "architectures": ["UMT5EncoderModel"],
    "model_type": "umt5",
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "num_decoder_layers": 24,
    "vocab_size": 256384,
    "feed_forward_proj": "gated-gelu",
    "dense_act_fn": "gelu_new",
    "is_gated_act": True,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}


@dataclass
class MetaModel:
    """A model on the meta device and the parameters of its stood-in frozen encoders.

    Attributes:
        model: The GenProp model (text / image encoders replaced by shape-only stand-ins).
        text_encoder_params: Parameters of the configured text encoder (0 for hashing).
        image_encoder_params: Parameters of the CLIP image encoder (0 without image tokens).
    """

    model: GenPropModel
    text_encoder_params: int
    image_encoder_params: int


class _ImageTokens(nn.Module):
    """Stand-in of ``genprop.modeling.image_encoder.CLIPImageEncoder``: its CLIP vision model built
    from
    ``image_encoder/config.json`` (meta), run on a blank 224 px image per first frame."""

    def __init__(self, path: str) -> None:
        super().__init__()
        import transformers
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(Path(path) / "image_encoder", local_files_only=True)
        arch = (config.architectures or ["CLIPVisionModel"])[0]
        self.encoder = getattr(transformers, arch)(config)
        self.encoder.requires_grad_(False)
        self.dim = int(config.hidden_size)
        self.size = int(config.image_size)

    @torch.no_grad()
    def forward(self, first: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> penultimate hidden states (B, N_img, dim) float32."""
        param = next(self.encoder.parameters())
        pixels = torch.zeros(
            first.shape[0], 3, self.size, self.size, dtype=param.dtype, device=param.device
        )
        out = self.encoder(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[-2].float()


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def text_encoder_parameters(text: TextConfig) -> int:
    """Parameters of a ``transformers`` text encoder, from its config only (0 for hashing)."""
    if text.kind != "transformers" or not text.path:
        return 0
    import transformers
    from transformers import AutoConfig

    root = Path(text.path)
    folder = root / "text_encoder" if (root / "text_encoder").is_dir() else root
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    arch = (config.architectures or [""])[0]
    model_cls = getattr(transformers, arch, None) if arch else None
    with torch.device("meta"):
        if model_cls is None:
            model = transformers.AutoModel.from_config(config)
        else:
            model = model_cls(config)
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
    return _parameters(encoder)


def _fill_from_folder(cfg: GenPropConfig) -> None:
    """Store the transformer / VAE configs of the folder in ``cfg`` (what loading would do): the
    backbone's through its family (Wan: ``transformer_config`` / ``transformer_2_config``), a
    learned codec's architecture from its ``codec.json``."""
    family = family_of(cfg.backbone)
    if family.pretrained_path(cfg.backbone) is not None:
        family.read_architecture(cfg.backbone)
    codec = cfg.codec
    if codec.kind == "wan_vae" and codec.path is not None and codec.vae_config is None:
        path = Path(codec.path) / (codec.subfolder or "") / "config.json"
        codec.vae_config = read_json_object(path, what="JSON config")
    if codec.kind == "learned" and codec.path is not None:
        where = str(Path(codec.path) / CODEC_CONFIG)
        for name, value in check_architecture(read_codec_config(codec.path), where=where).items():
            setattr(codec, name, value)


@contextmanager
def config_only_image_encoder() -> Iterator[None]:
    """Build image encoders as :class:`_ImageTokens` while the model is constructed."""
    import genprop.modeling.image_encoder as image_encoder

    original = image_encoder.CLIPImageEncoder
    image_encoder.CLIPImageEncoder = _ImageTokens  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        image_encoder.CLIPImageEncoder = original  # type: ignore[misc]


def config_only(config: GenPropConfig) -> GenPropConfig:
    """A copy of ``config`` that builds without reading weights: the folder's transformer / VAE
    configs stored in it, the text encoder replaced by a one-row hashing table of the same width
    and length (a step needs only its (B, L, dim) output)."""
    cfg = copy.deepcopy(config)
    _fill_from_folder(cfg)
    cfg.text = replace(cfg.text, kind="hashing", path=None, buckets=1)
    return cfg


def build_meta_model(config: GenPropConfig, *, encoders: bool = True) -> MetaModel:
    """The model of ``config`` on the meta device, from configs only.

    Args:
        config: The model config.
        encoders: ``False`` builds the model a latent-cache run trains (``data.latents``): no
            VAE, text or image encoder (their outputs come from the cache), so none is counted.

    Raises:
        FileNotFoundError / ValueError: A config file of the folder is missing or invalid (named).
    """
    text_params = text_encoder_parameters(config.text) if encoders else 0
    with torch.device("meta"), config_only_image_encoder():
        model = GenPropModel(config_only(config), load_weights=False, encoders=encoders)
    image = getattr(model, "image_encoder", None)
    image_params = _parameters(image) if image is not None and encoders else 0
    return MetaModel(
        model=model, text_encoder_params=text_params, image_encoder_params=image_params
    )


def build_random_model(config: GenPropConfig, device: torch.device | str) -> GenPropModel:
    """The model :func:`build_meta_model` plans, with random weights on a real ``device``.

    Same architecture and stand-ins (hashing text encoder, config-built image encoder), so a real
    step of it checks the plan (tests, ``benchmarks.gpu``).
    """
    with torch.device(device), config_only_image_encoder():
        return GenPropModel(config_only(config), load_weights=False)


def write_config_folder(configs: Mapping[str, Mapping[str, object]], out: str | Path) -> Path:
    """Write a pipeline folder holding only configs (enough to plan, nothing to load).

    Args:
        configs: Sub-folder name -> its ``config.json`` (``transformer``, ``transformer_2``,
            ``vae``, ``image_encoder``, optionally ``text_encoder``: default
            :data:`UMT5_XXL_ENCODER`); ``pipeline`` -> ``model_index.json`` fields
            (``_class_name``, ``boundary_ratio``, ``expand_timesteps``) and the scheduler's
            ``flow_shift``.
        out: Folder to write (created).

    Returns:
        The folder.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    configs = dict(configs)
    pipeline = dict(configs.pop("pipeline", {}))
    configs.setdefault("text_encoder", UMT5_XXL_ENCODER)
    for sub, config in configs.items():
        (root / sub).mkdir(exist_ok=True)
        (root / sub / "config.json").write_text(json.dumps(config, indent=2))
    index_keys = ("_class_name", "boundary_ratio", "expand_timesteps")
    index = {k: pipeline[k] for k in index_keys if k in pipeline}
    (root / "model_index.json").write_text(json.dumps(index, indent=2))
    (root / "tokenizer").mkdir(exist_ok=True)
    if "image_encoder" in configs:
        (root / "image_processor").mkdir(exist_ok=True)
    if "flow_shift" in pipeline:
        (root / "scheduler").mkdir(exist_ok=True)
        scheduler = {"flow_shift": pipeline["flow_shift"]}
        (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    return root


def main(argv: list[str] | None = None) -> int:
    """``python -m genprop.scale.meta_model CONFIGS.json OUT``: write a config-only pipeline
    folder."""
    parser = argparse.ArgumentParser(prog="python -m genprop.scale.meta_model", description=__doc__)
    parser.add_argument("configs", type=Path, help="JSON: sub-folder name -> config.json")
    parser.add_argument("out", type=Path, help="folder to write")
    args = parser.parse_args(argv)
    try:
        configs = read_json_object(args.configs, what="pipeline configs")
        write_config_folder(configs, args.out)
    except (OSError, ValueError) as err:
        print(f"genprop.scale.meta_model: {err}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
