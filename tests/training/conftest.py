"""Training-test fixtures: tiny shards in the real schema, in-process config composition."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch.distributed as dist
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shard_factory import write_shards

from training.train import CONF_DIR, register_resolvers

FRAMES, SIZE = 4, 32  # the cpu_test preset's clip geometry


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training shards x 6 samples and 1 validation shard x 3 samples, 4x32x32 lossless."""
    root = tmp_path_factory.mktemp("shards")
    write_shards(root / "train", shards=4, per_shard=6, frames=FRAMES, size=SIZE)
    write_shards(root / "val", shards=1, per_shard=3, prefix="val", frames=FRAMES, size=SIZE)
    return root


@pytest.fixture
def compose_cfg() -> Callable[[list[str]], DictConfig]:
    """Compose ``conf/training/train.yaml`` in-process with the given overrides."""
    register_resolvers()

    def _compose(overrides: list[str]) -> DictConfig:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=overrides)

    return _compose


@pytest.fixture
def single_rank_mesh() -> Iterator[DeviceMesh]:
    """A world-size-1 gloo process group and CPU device mesh (torn down after the test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()
