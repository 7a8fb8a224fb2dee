"""The published configs of each Wan checkpoint (``wan_configs/``, see its README for sources).

Fast: each config at full depth in a folder of its real layout (configs only), checked by
``wan_config`` on the meta device, with the SCE / MPD copies built on the meta device too.
Slow: the real widths (5120 / TI2V 3072, ffn, text 4096, CLIP 1280 with 257 tokens) with the depth
cut to one block per transformer, two CLIP layers, a tiny VAE of the real channel count (16 / 48,
TI2V's with patch 2) and a one-layer UMT5 of the real width (d_model 4096),
written with diffusers' ``save_pretrained``, loaded through ``wan_config`` + ``from_config`` and
run for one training and one sampling step (~10 GB of RAM per expert in fp32).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from genprop_helpers import make_batch

from genprop import GenPropModel, training_losses
from genprop.backbones.wan.pretrained import TINY_WAN_VAE, wan_config
from genprop.flow import sampling_times

CONFIGS = Path(__file__).parent / "wan_configs"
SUPPORTED = ["wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"]
TEXT_ENCODER = {"architectures": ["UMT5EncoderModel"], "model_type": "umt5", "d_model": 4096}


def _published(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _config_folder(root: Path, name: str) -> Path:
    """The variant's layout with its published configs and no weights (meta-device checks)."""
    cfg = _published(name)
    pipe = cfg["pipeline"]
    index = {"_class_name": pipe["_class_name"], "boundary_ratio": pipe.get("boundary_ratio")}
    index["expand_timesteps"] = pipe.get("expand_timesteps", False)
    _write_json(root / "model_index.json", index)
    _write_json(root / "scheduler" / "scheduler_config.json", {"flow_shift": pipe["flow_shift"]})
    for part in ("transformer", "transformer_2", "vae", "image_encoder"):
        if part in cfg:
            _write_json(root / part / "config.json", cfg[part])
    _write_json(root / "text_encoder" / "config.json", TEXT_ENCODER)
    (root / "tokenizer").mkdir()
    if "image_encoder" in cfg:
        (root / "image_processor").mkdir()
    return root


@pytest.mark.parametrize("name", SUPPORTED)
def test_full_depth_config_is_accepted_on_meta(tmp_path: Path, name: str) -> None:
    from diffusers import WanTransformer3DModel

    from genprop.backbones.wan.backbone import WanBackbone
    from genprop.modeling.content_encoder import SelectiveContentEncoder
    from genprop.modeling.mask_decoder import MaskPredictionDecoder

    published = _published(name)
    cfg = wan_config(_config_folder(tmp_path / name, name), num_frames=81, height=480, width=832)
    t_cfg = published["transformer"]
    depth, width = t_cfg["num_layers"], t_cfg["num_attention_heads"] * t_cfg["attention_head_dim"]
    assert cfg.sce_blocks == depth // 2 and cfg.text.max_tokens == 512 and cfg.text.dim == 4096
    a14b = "boundary_ratio" in published["pipeline"]
    ti2v = bool(published["pipeline"].get("expand_timesteps"))
    assert cfg.backbone.expand_timesteps == ti2v
    assert cfg.backbone.boundary_ratio == (0.9 if a14b else None)
    assert (cfg.backbone.image_encoder_path is None) == (a14b or ti2v)
    assert cfg.timestep_shift == (5.0 if a14b else published["pipeline"]["flow_shift"])
    with torch.device("meta"):
        bb = WanBackbone(
            WanTransformer3DModel.from_config(t_cfg),
            latent_channels=published["vae"]["z_dim"],
            mask_channels=4,
            first_frame_by_replacement=ti2v,
        )
        sce = SelectiveContentEncoder(bb, cfg.sce_blocks)
        mpd = MaskPredictionDecoder(bb)
    assert (bb.dim, bb.num_blocks, bb.text_dim) == (width, depth, 4096)
    assert bb.image_dim == (None if a14b or ti2v else 1280)
    block = sum(p.numel() for p in bb.blocks[0].parameters())
    assert sum(p.numel() for p in sce.blocks.parameters()) == depth // 2 * block
    assert sum(p.numel() for p in mpd.block.parameters()) == block


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("wan2.1-flf2v-14b-720p", r"pos_embed_seq_len 514 marks Wan2\.1-FLF2V"),
    ],
)
def test_unsupported_published_configs_are_refused(tmp_path: Path, name: str, message: str):
    with pytest.raises(ValueError, match=message):
        wan_config(_config_folder(tmp_path / name, name), num_frames=81, height=480, width=832)


def _real_width_folder(root: Path, name: str) -> Path:
    """The variant at its real widths, depth cut (see module docstring), in the real layout."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    from genprop.backbones.wan.tiny import TINY_TI2V_VAE, save_wan_pipeline, tiny_text_encoder

    cfg = _published(name)
    parts: dict[str, Any] = {}
    torch.manual_seed(0)
    for key in ("transformer", "transformer_2"):
        if key in cfg:
            parts[key] = WanTransformer3DModel.from_config({**cfg[key], "num_layers": 1})
    if "image_encoder" in cfg:
        clip = {k: v for k, v in cfg["image_encoder"].items() if k not in ("architectures",)}
        parts["image_encoder"] = CLIPVisionModel(
            CLIPVisionConfig(**{**clip, "num_hidden_layers": 2})
        )
        parts["image_processor"] = CLIPImageProcessorPil()  # 224 px, CLIP mean / std
    ti2v = cfg["pipeline"].get("expand_timesteps", False)
    if ti2v:
        parts["expand_timesteps"] = True
    else:
        parts["boundary_ratio"] = cfg["pipeline"].get("boundary_ratio")
    parts["text_encoder"] = tiny_text_encoder(4096)
    parts["vae"] = AutoencoderKLWan.from_config(dict(TINY_TI2V_VAE if ti2v else TINY_WAN_VAE))
    return save_wan_pipeline(root, parts, flow_shift=cfg["pipeline"]["flow_shift"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wan2.1-i2v-14b-480p", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"])
def test_real_width_training_and_sampling_step(tmp_path: Path, name: str) -> None:
    folder = _real_width_folder(tmp_path / name, name)
    cfg = wan_config(folder, num_frames=5, height=32, width=32, sce_blocks=1)
    model = GenPropModel.from_config(cfg)
    model.freeze_backbone()
    assert model.backbone.dim == {"wan2.2-ti2v-5b": 3072}.get(name, 5120)
    batch = make_batch(cfg, batch=1)
    for expert_seed in (0, 1):  # A14B: the seeds pick different experts (shares ~0.24 / 0.76)
        losses = training_losses(
            model,
            batch,
            stage="genprop",
            generator=torch.Generator().manual_seed(0),
            expert_seed=expert_seed,
        )
        losses["total"].backward()
        assert math.isfinite(float(losses["total"].detach()))
        model.zero_grad(set_to_none=True)
    with torch.no_grad():
        first = model.encode_first_frame(batch.first, cfg.num_frames)
        content = model.codec.encode(batch.sce)
        image = model.encode_image(batch.first)
        x = torch.randn(first.shape)
        t = sampling_times(1, shift=cfg.timestep_shift)
        out = model(x, t[:1], first, content=content, task=torch.tensor([0]), image_embeds=image)
    grid = (1, 2, 2, 2) if cfg.backbone.expand_timesteps else (1, 2, 4, 4)  # TI2V: 16x VAE
    assert torch.isfinite(out.velocity).all() and out.mask_logits.shape == grid
