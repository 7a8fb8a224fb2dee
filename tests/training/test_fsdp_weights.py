"""Meta-device build and slice-by-slice weight loading (single process, no sharding needed:
the loaders treat a plain tensor as the one shard of itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from genprop.configs import preset
from genprop.modeling.model import CONFIG_NAME, WEIGHTS_NAME, GenPropModel
from genprop.scale.sharded_weights import (
    build_model_to_shard,
    load_genprop_shards,
    materialize_,
    safetensors_index,
)
from genprop.scale.sharding import cast_frozen_, shard_units


def _seeded_model() -> GenPropModel:
    torch.manual_seed(0)
    model = GenPropModel.from_config(preset("cpu_test"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def test_meta_build_loads_every_weight_from_a_folder(tmp_path: Path) -> None:
    source = _seeded_model()
    folder = source.save_pretrained(tmp_path / "m")
    model = build_model_to_shard(source.config)
    assert all(p.is_meta for p in model.backbone.parameters())
    materialize_(model, "cpu")
    assert load_genprop_shards(model, folder) == []
    want = source.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, want[name]), name
    buffers = dict(source.named_buffers())  # non-persistent ones too (text hashing table)
    assert buffers and all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())


def test_stage1_folder_initialises_sce_and_mpd_from_the_backbone(tmp_path: Path) -> None:
    source = _seeded_model()
    folder = tmp_path / "stage1"
    folder.mkdir()
    source.save_pretrained(tmp_path / "full")
    (folder / CONFIG_NAME).write_text((tmp_path / "full" / CONFIG_NAME).read_text())
    backbone = {k: v for k, v in source.state_dict().items() if k.startswith("backbone.")}
    save_file(backbone, str(folder / WEIGHTS_NAME))
    model = build_model_to_shard(source.config)
    materialize_(model, "cpu")
    defaults = load_genprop_shards(model, folder)
    # MPD norm + head and the injections' first layers: default init, never left unallocated
    defaults_of = ("mask_decoder.", "content_encoder.injections.")
    assert defaults and all(n.startswith(defaults_of) for n in defaults)
    assert any(".net.0." in n for n in defaults)
    params = dict(model.named_parameters())
    assert all(torch.isfinite(params[n]).all() for n in defaults)
    sce, bb = model.content_encoder, model.backbone
    assert torch.equal(sce.blocks[0].qkv.weight, bb.blocks[0].qkv.weight)
    assert torch.equal(model.mask_decoder.block.qkv.weight, bb.blocks[-1].qkv.weight)
    assert not sce.injections[0].net[2].weight.any() and not sce.fusion.weight.any()


def test_loader_rejects_a_shape_mismatch(tmp_path: Path) -> None:
    source = _seeded_model()
    folder = source.save_pretrained(tmp_path / "m")
    save_file({"task_embedding.weight": torch.zeros(2, 2)}, str(folder / WEIGHTS_NAME))
    model = build_model_to_shard(source.config)
    materialize_(model, "cpu")
    with pytest.raises(ValueError, match=r"task_embedding.weight.*shape"):
        load_genprop_shards(model, folder)


def test_safetensors_index_needs_weights(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no \.safetensors"):
        safetensors_index(tmp_path)


def test_materialize_refuses_unknown_non_persistent_buffers() -> None:
    class Tables(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("table", torch.arange(4.0), persistent=False)

    with torch.device("meta"):
        module = nn.Sequential(Tables())
    with pytest.raises(ValueError, match=r"0 \(Tables\): non-persistent buffers"):
        materialize_(module, "cpu")


def test_plan_units_and_frozen_cast() -> None:
    model = _seeded_model()
    units = shard_units(model)
    cfg = model.config
    assert len(units) == cfg.backbone.depth + cfg.sce_blocks + 1
    assert units[cfg.backbone.depth][1] is model.content_encoder.injections[0]  # block + its MLP
    model.requires_grad_(False)
    for p in model.trainable_parameters("genprop"):
        p.requires_grad_(True)
    cast_frozen_(model, torch.bfloat16)
    assert {p.dtype for p in model.backbone.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.content_encoder.parameters()} == {torch.float32}
