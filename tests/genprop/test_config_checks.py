"""Config validation: every bad field of a config.json is one clear error, before allocation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genprop import GenPropModel, preset
from genprop.backbones.wan.pretrained import TINY_WAN_TRANSFORMER, TINY_WAN_VAE
from genprop.config_checks import MAX_PARAMETERS, ConfigError, check_config, estimate_parameters
from genprop.configs import PRESETS, CodecConfig, GenPropConfig, TextConfig, WanConfig

# Wan2.1-I2V-14B's published transformer config (diffusers layout; wan_configs/ has its source).
_PUBLISHED = Path(__file__).parent / "wan_configs" / "wan2.1-i2v-14b-480p.json"
WAN21_I2V_14B = {
    k: v
    for k, v in json.loads(_PUBLISHED.read_text())["transformer"].items()
    if not k.startswith("_")
}


def _wan(transformer: dict, **over: object) -> GenPropConfig:
    fields = dict(sce_blocks=2, num_frames=5, height=32, width=32) | over
    return GenPropConfig(
        backbone=WanConfig(transformer_config=dict(transformer)),
        codec=CodecConfig(kind="wan_vae", vae_config=dict(TINY_WAN_VAE)),
        text=TextConfig(dim=16, max_tokens=4, buckets=64),
        **fields,
    )


def _model_size(model: torch.nn.Module) -> int:
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return sum(t.numel() for name, t in tensors if not name.startswith("codec."))


@pytest.mark.parametrize("name", ["cpu_test", "demo"])
def test_presets_pass_and_the_estimate_matches_the_built_model(name: str) -> None:
    cfg = preset(name)
    check_config(cfg)
    actual = _model_size(GenPropModel.from_config(cfg))
    assert 0.9 * actual <= estimate_parameters(cfg) <= 1.1 * actual


def test_every_preset_round_trips_through_from_dict() -> None:
    for name in PRESETS:
        cfg = preset(name)
        assert GenPropConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.slow  # builds a diffusers Wan transformer (imports diffusers: ~30 s on one core)
def test_wan_estimate_matches_the_tiny_model() -> None:
    cfg = _wan(TINY_WAN_TRANSFORMER)
    actual = _model_size(GenPropModel.from_config(cfg))
    assert 0.85 * actual <= estimate_parameters(cfg) <= 1.15 * actual


def test_real_wan_14b_configs_pass() -> None:
    # Wan 14B, 720P 81 frames, the SCE copying all 40 blocks: about 35 billion, under the limit.
    big = _wan(WAN21_I2V_14B, sce_blocks=40, num_frames=81, height=720, width=1280)
    big.text = TextConfig(kind="transformers", path="text_encoder", dim=4096, max_tokens=512)
    check_config(big)
    assert 30e9 < estimate_parameters(big) < MAX_PARAMETERS
    # Wan2.2-I2V-A14B: two 14B experts (no image tokens), each with a full-depth SCE copy.
    expert = {k: v for k, v in WAN21_I2V_14B.items() if k not in ("image_dim", "added_kv_proj_dim")}
    big = _wan(expert, sce_blocks=40, num_frames=81, height=720, width=1280)
    big.backbone.transformer_2_config = dict(expert)
    big.backbone.boundary_ratio = 0.9
    big.text = TextConfig(kind="transformers", path="text_encoder", dim=4096, max_tokens=512)
    check_config(big)
    assert 55e9 < estimate_parameters(big) < MAX_PARAMETERS


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("backbone", "dim", float("nan")),
        ("backbone", "dim", 0),
        ("backbone", "dim", "32"),
        ("backbone", "dim", True),
        ("backbone", "heads", -2),
        ("backbone", "depth", 10**9),
        ("backbone", "patch", 0),
        ("backbone", "mlp_ratio", float("inf")),
        ("backbone", "t_min", 0.0),
        ("backbone", "prediction", "noise"),
        ("codec", "patch", 0),
        ("codec", "scale", 0.0),
        ("codec", "shift", float("nan")),
        ("codec", "subfolder", "../../elsewhere"),
        ("text", "buckets", 10**12),
        ("text", "max_tokens", -1),
        (None, "num_frames", 0),
        (None, "height", -32),
        (None, "timestep_shift", float("nan")),
        (None, "sce_blocks", 99),
        (None, "content_gate", "yes"),
    ],
)
def test_bad_field_is_named(section: str | None, field: str, value: object) -> None:
    data = preset("cpu_test").to_dict()
    (data if section is None else data[section])[field] = value
    name = field if section is None else f"{section}.{field}"
    with pytest.raises(ConfigError, match=rf"field '{name}': expected"):
        GenPropConfig.from_dict(data)


def test_per_field_bounds_cannot_add_up_to_a_huge_model() -> None:
    data = preset("cpu_test").to_dict()
    data["backbone"].update(dim=32768, depth=1024, heads=256)
    with pytest.raises(ConfigError, match="billion parameters"):
        GenPropConfig.from_dict(data)
    data = preset("cpu_test").to_dict()
    data.update(num_frames=4096, height=65536, width=65536)
    with pytest.raises(ConfigError, match="tokens"):
        GenPropConfig.from_dict(data)


def test_wan_transformer_config_values_are_checked() -> None:
    bad = dict(TINY_WAN_TRANSFORMER, num_layers=0)
    with pytest.raises(ConfigError, match=r"backbone\.transformer_config\.num_layers"):
        check_config(_wan(bad))
    bad = dict(TINY_WAN_TRANSFORMER, patch_size=[1, 0, 2])
    with pytest.raises(ConfigError, match=r"backbone\.transformer_config\.patch_size"):
        check_config(_wan(bad))


def _saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "m")


def _edit_config(folder: Path, section: str, field: str, value: object) -> None:
    meta = json.loads((folder / "config.json").read_text())
    meta[section][field] = value
    (folder / "config.json").write_text(json.dumps(meta))  # NaN/Infinity as Python writes them


@pytest.mark.parametrize("value", [float("nan"), 0, -4, 10**9])
def test_from_pretrained_names_the_file_and_field(tmp_path: Path, value: object) -> None:
    folder = _saved(tmp_path)
    _edit_config(folder, "backbone", "dim", value)
    with pytest.raises(ValueError, match=r"config\.json: field 'backbone\.dim'"):
        GenPropModel.from_pretrained(folder)


def test_deeply_nested_or_truncated_config_is_a_clear_error(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"config\.json: .*nested too deeply"):
        GenPropModel.from_pretrained(folder)
    (folder / "config.json").write_text('{"format": "genprop", "backbone": ')
    with pytest.raises(ValueError, match=r"config\.json: invalid JSON at line 1"):
        GenPropModel.from_pretrained(folder)


def test_damaged_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"model\.safetensors: unreadable or mismatched"):
        GenPropModel.from_pretrained(folder)


WAN_CONFIGS = sorted((Path(__file__).parent / "wan_configs").glob("*.json"))


@pytest.mark.parametrize("path", WAN_CONFIGS, ids=[p.stem for p in WAN_CONFIGS])
def test_published_wan_configs_with_a_full_depth_sce_are_within_budget(path: Path) -> None:
    published = json.loads(path.read_text())
    first, second = published["transformer"], published.get("transformer_2")
    cfg = _wan(first, sce_blocks=first["num_layers"], num_frames=81, height=720, width=1280)
    cfg.backbone.transformer_2_config = second
    cfg.backbone.boundary_ratio = 0.9 if second else None
    cfg.codec.vae_config = published.get("vae", cfg.codec.vae_config)
    cfg.text = TextConfig(kind="transformers", path="text_encoder", dim=4096, max_tokens=512)
    check_config(cfg)
    assert 5e9 < estimate_parameters(cfg) < MAX_PARAMETERS
