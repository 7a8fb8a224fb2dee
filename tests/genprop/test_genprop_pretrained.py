"""GenProp on a pretrained Wan2.x I2V diffusers folder (a tiny random one written in-process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from genprop_helpers import perturb, step_inputs
from safetensors.torch import load_file

from genprop import GenPropModel, propagate
from genprop.pretrained import TINY_WAN_TRANSFORMER, wan_config, write_tiny_wan_pipeline

GEOMETRY = dict(num_frames=5, height=32, width=32, text_max_tokens=6)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_wan_pipeline(tmp_path_factory.mktemp("wan") / "tiny-wan", seed=0)


def _copy(pipeline: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(pipeline, dst)
    return dst


def _edit_json(path: Path, **fields) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_wan_config_reads_the_folder(pipeline: Path) -> None:
    cfg = wan_config(pipeline, **GEOMETRY)
    root = str(pipeline.resolve())
    assert (cfg.backbone.kind, cfg.backbone.path, cfg.backbone.subfolder) == (
        "wan",
        root,
        "transformer",
    )
    assert (cfg.codec.kind, cfg.codec.path, cfg.codec.subfolder) == ("wan_vae", root, "vae")
    assert (cfg.text.kind, cfg.text.path, cfg.text.dim, cfg.text.max_tokens) == (
        "transformers",
        root,
        TINY_WAN_TRANSFORMER["text_dim"],
        6,
    )
    assert cfg.sce_blocks == TINY_WAN_TRANSFORMER["num_layers"] // 2
    assert (cfg.num_frames, cfg.height, cfg.width) == (5, 32, 32)
    assert wan_config(pipeline, sce_blocks=3, **GEOMETRY).sce_blocks == 3


def test_tiny_pipeline_is_deterministic(pipeline: Path, tmp_path: Path) -> None:
    state = torch.random.get_rng_state()
    again = write_tiny_wan_pipeline(tmp_path / "again", seed=0)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    for part in ("transformer", "vae"):
        (a,) = (pipeline / part).glob("*.safetensors")
        b = load_file(str(again / part / a.name))
        assert all(torch.equal(v, b[k]) for k, v in load_file(str(a)).items()), part


@pytest.mark.parametrize(
    "missing",
    ["transformer/config.json", "vae/config.json", "text_encoder/config.json", "tokenizer"],
)
def test_missing_part_names_it_and_the_layout(pipeline: Path, tmp_path: Path, missing: str) -> None:
    root = _copy(pipeline, tmp_path)
    target = root / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)" + missing + r".*expected a local Wan2\.x"):
        wan_config(root, **GEOMETRY)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        wan_config(tmp_path / "nope", **GEOMETRY)


def test_unsupported_checkpoints_get_the_adapters_errors(pipeline: Path, tmp_path: Path) -> None:
    root = _copy(pipeline, tmp_path)
    t_cfg = root / "transformer" / "config.json"
    original = t_cfg.read_text()
    _edit_json(t_cfg, image_dim=8, added_kv_proj_dim=24)  # Wan2.1-I2V: CLIP image tokens
    with pytest.raises(ValueError, match=r"config\.backbone: .*CLIP image tokens"):
        wan_config(root, **GEOMETRY)
    t_cfg.write_text(original)
    _edit_json(t_cfg, in_channels=48, out_channels=48)  # Wan2.2-TI2V-style layout
    with pytest.raises(ValueError, match=r"config\.backbone: Wan in/out channels 48/48"):
        wan_config(root, **GEOMETRY)
    t_cfg.write_text(original)
    _edit_json(root / "text_encoder" / "config.json", d_model=32)
    with pytest.raises(ValueError, match=r"d_model 32, but the transformer's text_dim is 16"):
        wan_config(root, **GEOMETRY)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (dict(height=24), r"height/width: 24x32, expected positive multiples of 16x16"),
        (dict(width=40), r"multiples of 16x16 \(VAE spatial factor 8 x transformer patch 2x2\)"),
        (dict(num_frames=6), r"num_frames: 6 frames, expected 1 \+ a multiple of 4"),
        (dict(sce_blocks=4), r"sce_blocks: 4, expected 1\.\.3"),
    ],
)
def test_bad_geometry_is_refused(pipeline: Path, override: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wan_config(pipeline, **{**GEOMETRY, **override})


@pytest.fixture(scope="module")
def model(pipeline: Path) -> GenPropModel:
    torch.manual_seed(0)
    net = GenPropModel.from_config(wan_config(pipeline, sce_blocks=2, **GEOMETRY))
    perturb(net.content_encoder, seed=2, scale=0.02)  # non-zero injections
    perturb(net.mask_decoder, seed=3, scale=0.02)
    perturb(net.task_embedding, seed=4, scale=0.02)
    return net.eval()


def test_model_loads_the_folders_weights(model: GenPropModel, pipeline: Path) -> None:
    (weights,) = (pipeline / "transformer").glob("*.safetensors")
    ref = load_file(str(weights))
    assert torch.equal(model.backbone.blocks[1].ffn.net[2].weight, ref["blocks.1.ffn.net.2.weight"])
    assert torch.equal(model.backbone.patch_embedder.conv.weight, ref["patch_embedding.weight"])
    text = load_file(str(pipeline / "text_encoder" / "model.safetensors"))
    q = "block.0.layer.0.SelfAttention.q.weight"
    assert type(model.text_encoder.encoder).__name__ == "UMT5Stack"
    assert torch.equal(model.text_encoder.encoder.state_dict()[q], text[f"encoder.{q}"])


def test_save_load_identical_and_no_text_encoder_saved(model: GenPropModel, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path / "m")
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert saved and not any(k.startswith("text_encoder.") for k in saved)
    loaded = GenPropModel.from_pretrained(tmp_path / "m").eval()
    inputs = step_inputs(model, batch=2, seed=5)
    task = torch.tensor([0, 3])
    content = inputs.pop("content")
    with torch.no_grad():
        a = model(**inputs, content=content, task=task)
        b = loaded(**inputs, content=content, task=task)
    assert torch.equal(a.velocity, b.velocity)
    assert torch.equal(a.mask_logits, b.mask_logits)


def test_propagate_one_step(model: GenPropModel) -> None:
    video = np.random.default_rng(0).integers(0, 256, (7, 20, 28, 3), dtype=np.uint8)
    res = propagate(model, video, video[0], "removal", prompt="remove the red car", steps=1)
    assert res.video.shape == video.shape and res.video.dtype == np.uint8
    assert res.masks.shape == video.shape[:3] and np.isfinite(res.masks).all()
