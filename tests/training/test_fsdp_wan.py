"""Meta-device build of a GenProp model on a Wan backbone, its weights read slice by slice from
the Wan diffusers pipeline folder (tiny random folders: Wan2.2-A14B with the transformers saved
in diffusers' sharded layout, Wan2.1-I2V as single files)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections import Counter
from collections.abc import Callable
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

import genprop.scale.sharded_weights as sharded_weights
from genprop.backbones.wan.folder import wan_config
from genprop.backbones.wan.tiny import write_tiny_wan_pipeline
from genprop.backbones.wan.weights import ZERO_INIT, wan_weight_sources
from genprop.configs import GenPropConfig
from genprop.modeling.model import GenPropModel
from genprop.scale.sharded_weights import (
    build_model_to_shard,
    load_pretrained_shards,
    load_wan_shards,
    materialize_,
)
from genprop.scale.sharding import mixed_precision, shard_model
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
    model = build_model_to_shard(_config(folder, variant), encoders=False)
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


def _sharded(cfg: GenPropConfig, mesh: Any) -> GenPropModel:
    """Meta build -> freeze the backbone -> shard (fp32) -> allocate, as ``trainer=fsdp``."""
    model = build_model_to_shard(cfg)
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
    encoders = [model.codec, model.text_encoder, model.image_encoder]
    frozen = [p for enc in encoders if enc is not None for p in enc.parameters()]
    assert frozen and not any(isinstance(p, DTensor) for p in frozen)  # replicated, not sharded
    assert _velocity(model) == pytest.approx(_velocity(ref), abs=1e-5)  # injections start at 0


@torch.no_grad()
def _velocity(model: GenPropModel) -> list[float]:
    """A GenProp step's velocity (flattened) on seeded inputs, encoders included."""
    g = torch.Generator().manual_seed(0)
    first = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    first_latent = model.encode_first_frame(first, GEOMETRY["num_frames"])
    x_t, content = (torch.randn(first_latent.shape, generator=g) for _ in range(2))
    context, mask = model.encode_prompts(["remove the red car"], 1)
    out = model(
        x_t,
        torch.tensor([0.95]),
        first_latent,
        content=content,
        task=torch.tensor([1]),
        context=context,
        context_mask=mask,
        image_embeds=model.encode_image(first),
    )
    return out.velocity.flatten().tolist()


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
    model = build_model_to_shard(_config(folders[A14B], A14B), encoders=False)
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
    """``safe_open`` that counts the elements read per ``subfolder/tensor`` (``log``)."""

    def __init__(self, log: Counter, path: str, **kwargs: Any) -> None:
        self.inner, self.log = safe_open(path, **kwargs), log
        self.sub = Path(path).parent.name  # transformer / transformer_2

    def __enter__(self) -> _RecordedFile:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)

    def keys(self) -> list[str]:
        return self.inner.keys()

    def get_slice(self, key: str) -> _RecordedSlice:
        return _RecordedSlice(self.inner.get_slice(key), f"{self.sub}/{key}", self.log)


def _local_equals(tensor: torch.Tensor, want: torch.Tensor) -> bool:
    """This rank's slice of ``tensor`` equals the same slice of the full tensor ``want``."""
    shape, offset = sharded_weights._local_slice(tensor)
    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    index = tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))
    return torch.equal(local, want[index])


def _load_as_rank(folder: Path, world: int, log: Counter) -> tuple[GenPropModel, list[str]]:
    """This rank's meta build + slice loading, with the tensor reads counted in ``log`` and the
    full-transformer loader refused."""
    from diffusers import WanTransformer3DModel

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the full transformer was loaded")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WanTransformer3DModel, "from_pretrained", refuse)
        patch.setattr(sharded_weights, "safe_open", lambda *a, **k: _RecordedFile(log, *a, **k))
        model = _sharded(_config(folder, A14B), init_device_mesh("cpu", (world,)))
        return model, load_wan_shards(model)


def _check_reads(reads: list[Counter], folder: Path, *, world: int) -> None:
    """Each rank reads at most ceil(rows / world) rows (dim 0) of each stored tensor per
    parameter it initialises, about 1/world of everything: no rank reads a whole transformer.
    With the logs of all ``world`` ranks: every element is read exactly once per parameter."""
    model = build_model_to_shard(_config(folder, A14B), encoders=False)
    uses = Counter(wan_weight_sources(model).values())
    shapes = {}
    for sub in ("transformer", "transformer_2"):
        for file in (folder / sub).glob("*.safetensors"):
            with safe_open(str(file), framework="pt") as f:
                shapes.update({(sub, k): f.get_slice(k).get_shape() for k in f.keys()})  # noqa: SIM118
    total = sum(torch.Size(s).numel() * uses[k] for k, s in shapes.items())
    for (sub, key), shape in shapes.items():
        numel = torch.Size(shape).numel() * uses[(sub, key)]
        if len(reads) == world:
            assert sum(log[f"{sub}/{key}"] for log in reads) == numel, key
        for log in reads:
            assert log[f"{sub}/{key}"] <= numel * -(-shape[0] // world) // shape[0], key
    for log in reads:
        assert sum(log.values()) < 1.2 * total / world  # about 1/world of everything


def test_rank_1_of_2_reads_only_its_slices(folders: dict[str, Path]) -> None:
    """Rank 1 of a world of 2 in this process (torch's fake process group: loading needs no
    collective; one rank per process, as torch caches device meshes). Both ranks of a real
    world: :func:`test_two_gloo_processes_load_their_slices`."""
    from torch.testing._internal.distributed.fake_pg import FakeStore  # single-process world

    ref, random = _random_in_from_config(_config(folders[A14B], A14B))
    want = ref.state_dict()
    log: Counter = Counter()
    dist.init_process_group("fake", store=FakeStore(), rank=1, world_size=2)
    try:
        model, defaults = _load_as_rank(folders[A14B], 2, log)
        assert random <= set(defaults)
        for name, tensor in model.state_dict().items():
            assert isinstance(tensor, DTensor) or name.startswith(("codec.", "text_"))
            if isinstance(tensor, DTensor):
                assert tuple(tensor.device_mesh.get_coordinate()) == (1,)
            if name not in random:
                assert _local_equals(tensor, want[name]), name
    finally:
        dist.destroy_process_group()
    _check_reads([log], folders[A14B], world=2)


def _rank(rank: int, world: int, port: int, folder: str, out: str) -> None:
    """One gloo rank: load its slices (reads counted), gather, compare with from_config."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        log: Counter = Counter()
        model, defaults = _load_as_rank(Path(folder), world, log)
        state = {n: _full(t) for n, t in model.state_dict().items()}  # collective
        if rank == 0:
            ref, random = _random_in_from_config(_config(Path(folder), A14B))
            assert random <= set(defaults)
            want = ref.state_dict()
            for name, tensor in state.items():
                if name not in random:
                    assert torch.equal(tensor, want[name]), name
        (Path(out) / f"reads_{rank}.json").write_text(json.dumps(dict(log)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_load_their_slices(folders: dict[str, Path], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = folders[A14B]
    mp.start_processes(
        _rank, args=(2, port, str(folder), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    reads = [Counter(json.loads((tmp_path / f"reads_{r}.json").read_text())) for r in (0, 1)]
    _check_reads(reads, folder, world=2)


def test_trainer_fsdp_with_a_wan_folder_builds_on_the_meta_device(
    folders: dict[str, Path], compose_cfg: Callable[[list[str]], DictConfig]
) -> None:
    from hydra.utils import instantiate

    wan = [f"model.net.pretrained={folders[A14B]}", "model.net.overrides.num_frames=5"]
    wan += ["model.net.overrides.height=32", "model.net.overrides.width=32"]
    cfg = use_meta_build(compose_cfg(["experiment=wan_paper", *wan]))
    assert cfg.model.net._target_ == META_BUILD
    net = instantiate(cfg.model.net)
    assert all(p.is_meta for p in net.backbone_parameters())
    assert not any(p.is_meta for p in net.text_encoder.parameters())  # frozen, built for real
    unchanged = [
        ["experiment=wan_paper", "trainer=ddp", *wan],  # not sharded: the full model per rank
        ["experiment=tiny_cpu", "trainer=fsdp"],  # a preset: no folder to read slices from
        ["experiment=wan_paper", "model.init_from=/runs/stage1/export", *wan],
    ]
    for overrides in unchanged:
        cfg = compose_cfg(overrides)
        assert use_meta_build(cfg) is cfg, overrides
