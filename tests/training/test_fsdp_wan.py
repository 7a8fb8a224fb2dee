"""Meta-device build of a GenProp model on a Wan backbone, its weights read slice by slice from
the Wan diffusers pipeline folder (tiny random folders: Wan2.2-A14B with the transformers saved
in diffusers' sharded layout, Wan2.1-I2V as single files)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import DictConfig
from safetensors import safe_open
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

import genprop.sharded_weights as sharded_weights
from genprop.configs import GenPropConfig
from genprop.model import GenPropModel
from genprop.sharded_weights import (
    build_meta_model,
    load_pretrained_shards,
    load_wan_shards,
    materialize_,
)
from genprop.sharding import mixed_precision, shard_model
from genprop.tiny_wan import write_tiny_wan_pipeline
from genprop.wan_folder import wan_config
from genprop.wan_weights import ZERO_INIT, wan_weight_sources
from training.fsdp import META_BUILD, use_meta_build

A14B, I2V21 = "wan2.2-a14b", "wan2.1-i2v"
GEOMETRY: dict[str, Any] = dict(num_frames=5, height=32, width=32, sce_blocks=2)
TEXT_TOKENS = {A14B: 8, I2V21: 512}  # Wan2.1's image tokens need the full 512 text tokens


def _config(folder: Path, variant: str) -> GenPropConfig:
    return wan_config(folder, text_max_tokens=TEXT_TOKENS[variant], **GEOMETRY)


def _reshard_transformers(folder: Path) -> None:
    """Re-save each transformer as ``diffusion_pytorch_model-0000k-of-0000n.safetensors`` +
    index json (the layout of the published 14B checkpoints)."""
    from diffusers import WanTransformer3DModel

    for sub in ("transformer", "transformer_2"):
        model = WanTransformer3DModel.from_pretrained(folder / sub, local_files_only=True)
        shutil.rmtree(folder / sub)
        model.save_pretrained(folder / sub, max_shard_size="40KB")
        assert len(list((folder / sub).glob("*.safetensors"))) > 1


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wan")
    a14b = write_tiny_wan_pipeline(root / A14B, seed=0, variant=A14B)
    _reshard_transformers(a14b)
    return {A14B: a14b, I2V21: write_tiny_wan_pipeline(root / I2V21, seed=1, variant=I2V21)}


def _stored_keys(folder: Path) -> set[str]:
    keys: set[str] = set()
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            keys.update(f.keys())
    return keys


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def _random_in_from_config(cfg: GenPropConfig) -> tuple[GenPropModel, set[str]]:
    """``GenPropModel.from_config`` (seed 0) and the names it initialises at random (they differ
    between two seeds)."""
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(GenPropModel.from_config(cfg))
    other = models[1].state_dict()
    random = {n for n, t in models[0].state_dict().items() if not torch.equal(t, other[n])}
    return models[0], random


def _compare(model: GenPropModel, ref: GenPropModel, random: set[str], defaults: list[str]) -> None:
    """Every weight equals ``ref``'s, except the random layers, which ``defaults`` names."""
    assert random and random <= set(defaults), sorted(random - set(defaults))
    want = ref.state_dict()
    got = model.state_dict()
    assert set(got) == set(want)
    for name, tensor in got.items():
        full = _full(tensor)
        if name in random:
            assert torch.isfinite(full).all(), name
        else:
            assert torch.equal(full, want[name]), name


@pytest.mark.parametrize("variant", [A14B, I2V21])
def test_key_map_covers_every_transformer_weight(folders: dict[str, Path], variant: str) -> None:
    folder = folders[variant]
    model = build_meta_model(_config(folder, variant), encoders=False)
    assert all(p.is_meta for p in model.backbone.parameters())
    sources = wan_weight_sources(model)
    experts = [("", "transformer")]
    if variant == A14B:
        experts.append(("expert_2.", "transformer_2"))
    for prefix, sub in experts:
        stored = _stored_keys(folder / sub)
        names = [n for n in model.state_dict() if n.startswith(prefix + "backbone.")]
        # the backbone map is one-to-one onto the transformer's stored tensors
        assert sorted(sources[n][1] for n in names) == sorted(stored)
        assert {sources[n][0] for n in names} == {sub}
        depth = model.backbone.num_blocks
        for name in model.state_dict():
            local = name.removeprefix(prefix)
            if name.startswith(prefix) and local.startswith("content_encoder.blocks."):
                assert sources[name] == sources[prefix + "backbone." + local[16:]]
            if name.startswith(prefix) and local.startswith("mask_decoder.block."):
                rest = local.removeprefix("mask_decoder.block.")
                assert sources[name] == sources[f"{prefix}backbone.blocks.{depth - 1}.{rest}"]
        embed = f"{prefix}content_encoder.embed.conv.weight"
        assert sources[embed] == (sub, "patch_embedding.weight")
    unmapped = {n for n in model.state_dict() if n not in sources}
    own = ("content_encoder.", "mask_decoder.", "task_embedding.", "expert_2.")
    assert all(n.startswith(own) for n in unmapped), sorted(unmapped)
    assert not any(
        ".blocks." in n or ".embed." in n or "mask_decoder.block." in n for n in unmapped
    )
    assert all(ZERO_INIT.match(n) or ".net.0." in n or "mask_decoder." in n for n in unmapped)


@pytest.fixture
def single_rank_mesh() -> Iterator[Any]:
    """A world-size-1 gloo process group and CPU device mesh (torn down after the test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def _sharded(cfg: GenPropConfig, mesh: Any) -> GenPropModel:
    """Meta build -> freeze the backbone -> shard (fp32) -> allocate, as ``trainer=fsdp``."""
    model = build_meta_model(cfg)
    model.requires_grad_(False)
    for p in model.trainable_parameters("genprop"):
        p.requires_grad_(True)
    shard_model(model, mesh, mp_policy=mixed_precision(None), frozen_dtype=None)
    materialize_(model, "cpu")
    return model


@pytest.mark.parametrize("variant", [A14B, I2V21])
def test_sharded_meta_build_equals_from_config(
    folders: dict[str, Path], variant: str, single_rank_mesh: Any
) -> None:
    cfg = _config(folders[variant], variant)
    model = _sharded(cfg, single_rank_mesh)
    defaults = load_pretrained_shards(model)  # the model's own folder (model.net.pretrained)
    ref, random = _random_in_from_config(cfg)
    _compare(model, ref, random, defaults)
    assert model.config.to_dict() == ref.config.to_dict()  # transformer configs filled in
    if variant == I2V21:
        assert model.image_encoder is not None and not isinstance(
            model.image_encoder.encoder.vision_model.embeddings.patch_embedding.weight, DTensor
        )  # the frozen CLIP is replicated, not sharded


def test_missing_transformer_weight_names_the_folder(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "cut"
    shutil.copytree(folders[A14B] / "transformer", folder / "transformer")
    (folder / "transformer_2").mkdir()
    state: dict[str, torch.Tensor] = {}
    for file in (folders[A14B] / "transformer_2").glob("*.safetensors"):
        state.update(load_file(file))
    del state["proj_out.bias"]
    save_file(state, str(folder / "transformer_2" / "weights.safetensors"))
    model = build_meta_model(_config(folders[A14B], A14B), encoders=False)
    materialize_(model, "cpu")
    with pytest.raises(ValueError, match=r"cut: 1 transformer weights missing.*proj_out\.bias"):
        load_wan_shards(model, folder)


# ---------------------------------------------------------------- two ranks


class _RecordedSlice:
    def __init__(self, inner: Any, key: str, log: Counter) -> None:
        self.inner, self.key, self.log = inner, key, log

    def get_shape(self) -> list[int]:
        return self.inner.get_shape()

    def __getitem__(self, index: Any) -> torch.Tensor:
        part = self.inner[index]
        self.log[self.key] += part.numel()
        return part


class _RecordedFile:
    """``safe_open`` that counts the elements read per tensor (``log``) by ``get_slice``."""

    def __init__(self, log: Counter, *args: Any, **kwargs: Any) -> None:
        self.inner, self.log = safe_open(*args, **kwargs), log

    def __enter__(self) -> _RecordedFile:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)

    def keys(self) -> list[str]:
        return self.inner.keys()

    def get_slice(self, key: str) -> _RecordedSlice:
        return _RecordedSlice(self.inner.get_slice(key), key, self.log)


def _rank(rank: int, world: int, port: int, folder: str, out: str) -> None:
    """One rank: meta build, shard, load its slices (reads recorded), compare with from_config."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from diffusers import WanTransformer3DModel

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("the full transformer was loaded")

        log: Counter = Counter()
        WanTransformer3DModel.from_pretrained = refuse  # type: ignore[method-assign]
        sharded_weights.safe_open = lambda *a, **k: _RecordedFile(log, *a, **k)  # type: ignore[assignment]
        cfg = _config(Path(folder), A14B)
        model = _sharded(cfg, init_device_mesh("cpu", (world,)))
        defaults = load_wan_shards(model)
        sharded_weights.safe_open = safe_open  # type: ignore[assignment]
        del WanTransformer3DModel.from_pretrained
        state = {n: _full(t) for n, t in model.state_dict().items()}  # collective
        if rank == 0:
            ref, random = _random_in_from_config(cfg)
            model.load_state_dict  # noqa: B018  (state already gathered above)
            _compare_state(state, ref, random, defaults)
        (Path(out) / f"reads_{rank}.json").write_text(json.dumps(dict(log)))
    finally:
        dist.destroy_process_group()


def _compare_state(
    state: dict[str, torch.Tensor], ref: GenPropModel, random: set[str], defaults: list[str]
) -> None:
    assert random and random <= set(defaults)
    want = ref.state_dict()
    for name, tensor in state.items():
        assert torch.isfinite(tensor).all() if name in random else torch.equal(tensor, want[name])


def test_two_ranks_each_read_about_half_of_each_tensor(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = folders[A14B]
    mp.start_processes(
        _rank, args=(2, port, str(folder), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    reads = [json.loads((tmp_path / f"reads_{r}.json").read_text()) for r in (0, 1)]
    model = build_meta_model(_config(folder, A14B), encoders=False)
    uses = Counter(key for _, key in wan_weight_sources(model).values())
    shapes = {}
    for sub in ("transformer", "transformer_2"):
        for file in (folder / sub).glob("*.safetensors"):
            with safe_open(str(file), framework="pt") as f:
                shapes.update({k: f.get_slice(k).get_shape() for k in f.keys()})
    total = sum(torch.Size(s).numel() * uses[k] for k, s in shapes.items())
    for key, shape in shapes.items():  # keys are the same in both experts' files
        numel = torch.Size(shape).numel() * uses[key]
        assert reads[0].get(key, 0) + reads[1].get(key, 0) == numel, key  # each element once
        rows = shape[0]
        for log in reads:  # FSDP2 shards dim 0: at most ceil(rows / 2) rows per rank
            assert log.get(key, 0) <= numel * -(-rows // 2) // rows, key
    for log in reads:
        assert sum(log.values()) < 0.6 * total  # about half of everything
