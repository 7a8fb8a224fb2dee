"""GenProp on a pretrained Wan2.x I2V diffusers folder (a tiny random one written in-process, the
default variant: Wan2.2-I2V-A14B's layout), the refusals of unsupported checkpoints and the
``python -m genprop.backbones.wan.pretrained tiny-wan`` command."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from genprop_helpers import perturb, step_inputs
from safetensors.torch import load_file

from genprop import GenPropModel, propagate
from genprop.backbones.wan.pretrained import (
    TINY_WAN_TRANSFORMER,
    main,
    wan_config,
    write_tiny_wan_pipeline,
)
from genprop.backbones.wan.tiny import DEFAULT_VARIANT, TINY_IMAGE_TOKENS

GEOMETRY = dict(num_frames=5, height=32, width=32, text_max_tokens=6)


@pytest.fixture(scope="module")
def pipeline(tiny_wan_folder: Callable[[str], Path]) -> Path:
    return tiny_wan_folder(DEFAULT_VARIANT)


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
    assert (cfg.backbone.subfolder_2, cfg.backbone.boundary_ratio) == ("transformer_2", 0.9)
    assert cfg.timestep_shift == 5.0  # Wan2.2-A14B's own sample_shift
    assert wan_config(pipeline, timestep_shift=3.0, **GEOMETRY).timestep_shift == 3.0
    one = wan_config(pipeline, transformer_subfolder="transformer_2", **GEOMETRY)
    assert (one.backbone.subfolder, one.backbone.boundary_ratio) == ("transformer_2", None)
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
    other = write_tiny_wan_pipeline(tmp_path / "other", seed=1)
    for part in ("transformer", "transformer_2", "vae"):
        (a,) = (pipeline / part).glob("*.safetensors")
        b = load_file(str(again / part / a.name))
        assert all(torch.equal(v, b[k]) for k, v in load_file(str(a)).items()), part
        c = load_file(str(other / part / a.name))
        assert not all(torch.equal(v, c[k]) for k, v in load_file(str(a)).items()), part


@pytest.mark.parametrize(
    "missing",
    [
        "transformer/config.json",
        "transformer_2/config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "tokenizer",
    ],
)
def test_missing_part_names_it_and_the_layout(pipeline: Path, tmp_path: Path, missing: str) -> None:
    root = _copy(pipeline, tmp_path)
    target = root / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)" + missing + r".*expected a local Wan2\.x"):
        wan_config(root, **GEOMETRY)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        wan_config(tmp_path / "nope", **GEOMETRY)


UNSUPPORTED = [
    # (file, fields written into it, message)
    (
        "transformer/config.json",
        {"_class_name": "CogVideoXTransformer3DModel", "patch_size": 2},
        r"_class_name 'CogVideoXTransformer3DModel' is not supported \(supported: "
        r"WanTransformer3DModel image-to-video checkpoints Wan2\.1-I2V-14B",
    ),
    (
        "transformer/config.json",
        {"_class_name": "LTXVideoTransformer3DModel", "patch_size": 1},
        r"_class_name 'LTXVideoTransformer3DModel' is not supported",
    ),
    (
        "transformer/config.json",
        {"in_channels": 16},
        r"in_channels 16 == out_channels 16 without expand_timesteps: a text-to-video",
    ),
    (
        "transformer/config.json",
        {**TINY_IMAGE_TOKENS, "pos_embed_seq_len": 514},
        r"pos_embed_seq_len 514 marks Wan2\.1-FLF2V",
    ),
    ("transformer/config.json", {"vace_layers": [0]}, r"fields \['vace_layers'\] are not Wan"),
    ("transformer_2/config.json", {"in_channels": 16}, r"transformer_2/config\.json: in_channels"),
    ("transformer/config.json", {"image_dim": 16}, r"image_dim 16 and added_kv_proj_dim None"),
    ("vae/config.json", {"_class_name": "AutoencoderKLCogVideoX"}, r"expected 'AutoencoderKLWan'"),
    ("model_index.json", {"_class_name": "LTXImageToVideoPipeline"}, r"'LTXImageToVideoPipeline'"),
    (
        "model_index.json",
        {"expand_timesteps": True},
        r"in_channels 36 / out_channels 16 / image_dim None: first-frame replacement",
    ),
    ("model_index.json", {"boundary_ratio": 1.5}, r"boundary_ratio 1\.5, expected \(0, 1\)"),
    ("text_encoder/config.json", {"d_model": 32}, r"d_model 32, but the transformer's text_dim"),
]


@pytest.mark.parametrize(("file", "fields", "message"), UNSUPPORTED)
def test_unsupported_checkpoints_are_refused_naming_the_field(
    pipeline: Path, tmp_path: Path, file: str, fields: dict, message: str
) -> None:
    root = _copy(pipeline, tmp_path)
    _edit_json(root / file, **fields)
    with pytest.raises(ValueError, match=message) as err:
        wan_config(root, **GEOMETRY)
    assert "\n" not in str(err.value)  # one line


def test_image_tokens_need_the_clip_folders(pipeline: Path, tmp_path: Path) -> None:
    root = _copy(pipeline, tmp_path)
    _edit_json(root / "transformer" / "config.json", **TINY_IMAGE_TOKENS)
    with pytest.raises(FileNotFoundError, match=r"image_encoder/config\.json: missing file"):
        wan_config(root, **{**GEOMETRY, "text_max_tokens": 512})


@pytest.mark.parametrize("variant", ["wan2.1-i2v", "wan2.2-a14b", "wan2.2-ti2v"])
def test_tiny_wan_command_writes_each_variant(tmp_path: Path, variant: str, capsys) -> None:
    out = tmp_path / variant
    assert main(["tiny-wan", "--out", str(out), "--variant", variant, "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    index = json.loads((out / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert (index.get("transformer_2") or [None])[0] == ("diffusers" if "a14b" in variant else None)
    tokens = 512 if variant == "wan2.1-i2v" else 6
    cfg = wan_config(out, **{**GEOMETRY, "text_max_tokens": tokens})
    assert (cfg.backbone.image_encoder_path is not None) == (variant == "wan2.1-i2v")
    assert (cfg.backbone.boundary_ratio is not None) == (variant == "wan2.2-a14b")
    assert cfg.backbone.expand_timesteps == (variant == "wan2.2-ti2v")
    vae = json.loads((out / "vae" / "config.json").read_text())
    assert (vae["z_dim"], vae.get("patch_size")) == ((48, 2) if "ti2v" in variant else (16, None))


def test_tiny_wan_command_default_is_the_paper_recipes_model(tmp_path: Path, capsys) -> None:
    assert main(["tiny-wan", "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "transformer_2" / "config.json").is_file()
    with pytest.raises(SystemExit) as err:
        main(["tiny-wan", "--out", str(tmp_path / "x"), "--variant", "cogvideox"])
    assert err.value.code == 2 and "invalid choice: 'cogvideox'" in capsys.readouterr().err


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


def test_save_load_identical_and_no_text_encoder_saved(
    model: GenPropModel, pipeline: Path, tmp_path: Path
) -> None:
    model.save_pretrained(tmp_path / "m")
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert saved and not any(k.startswith("text_encoder.") for k in saved)
    loaded = GenPropModel.from_pretrained(tmp_path / "m", allowed_roots=[pipeline]).eval()
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
