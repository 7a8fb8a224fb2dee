"""``genprop-train model=wan data.latents=CACHE``: trains from a ``genprop-cache`` folder without
building the VAE or the text encoder, and resumes exactly.

Resume tolerance: ``rtol=1e-5`` on the per-step losses (see ``test_resume_export.py``: the same
weights, optimizer state, noise and batches after a resume; the tolerance only absorbs float
reduction-order differences).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from shard_factory import write_shards
from test_cache import FRAMES, SIZE, cache_cfg, forbid_encoders

from genprop.backbones.wan.pretrained import write_tiny_wan_pipeline
from training.cache.key import LatentCacheError
from training.cache.runner import run_cache
from training.latent_datamodule import use_latent_cache
from training.train import train

N = 4  # total steps; the interrupted run stops at N // 2 (a checkpoint and a data-epoch boundary)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cache_train")
    pipeline = write_tiny_wan_pipeline(root / "wan", seed=0)
    write_shards(root / "px", shards=2, per_shard=2, frames=FRAMES, size=SIZE)
    run_cache(cache_cfg(pipeline, root / "px", root / "lat"))
    return pipeline, root / "lat"


def _overrides(pipeline: Path, latents: Path, run_dir: Path, steps: int, version: str) -> list[str]:
    return [
        "model=wan",
        f"model.net.pretrained={pipeline}",
        f"model.net.overrides.num_frames={FRAMES}",
        f"model.net.overrides.height={SIZE}",
        f"model.net.overrides.width={SIZE}",
        "model.net.overrides.text.max_tokens=8",
        f"data.latents={latents}",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.shuffle_buffer=4",
        f"data.epoch_batches={N // 2}",
        f"paths.root_dir={run_dir}",
        f"paths.run_dir={run_dir}",
        "trainer=cpu",
        f"trainer.max_steps={steps}",
        "trainer.log_every_n_steps=1",
        f"callbacks.periodic_checkpoint.every_n_train_steps={N // 2}",
        "callbacks.progress=null",
        "logger=many_loggers",
        f"logger.csv.version={version}",
    ]


def _losses(run_dir: Path, version: str) -> dict[int, float]:
    with open(run_dir / "csv" / version / "metrics.csv") as f:
        rows = csv.DictReader(f)
        return {int(r["step"]): float(r["train/total"]) for r in rows if r["train/total"]}


def test_train_from_latents_resumes_without_encoders(
    cache, tmp_path: Path, compose_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, latents = cache
    forbid_encoders(monkeypatch)
    a, b = tmp_path / "a", tmp_path / "b"

    def run(run_dir: Path, steps: int, version: str, *extra: str) -> None:
        cfg = compose_cfg([*_overrides(pipeline, latents, run_dir, steps, version), *extra])
        assert cfg.data.latents == str(latents) and cfg.data.shards is None
        train(use_latent_cache(cfg))

    run(a, N, "full")
    run(b, N // 2, "part1")
    run(b, N, "part2", "resume=auto")
    full, resumed = _losses(a, "full"), _losses(b, "part1") | _losses(b, "part2")
    assert sorted(full) == sorted(resumed) == list(range(N))
    got = torch.tensor([resumed[s] for s in range(N)])
    torch.testing.assert_close(got, torch.tensor([full[s] for s in range(N)]), rtol=1e-5, atol=0)
    assert (a / "export" / "last" / "model.safetensors").is_file()


def test_train_refuses_a_cache_of_another_model(cache, tmp_path: Path, compose_cfg) -> None:
    _, latents = cache
    other = write_tiny_wan_pipeline(tmp_path / "wan-seed1", seed=1)
    cfg = compose_cfg(_overrides(other, latents, tmp_path / "run", 1, "x"))
    with pytest.raises(Exception, match=r"has encoder key \w{16}, this model needs \w{16}") as err:
        train(use_latent_cache(cfg))
    assert isinstance(err.value, LatentCacheError) or isinstance(
        err.value.__cause__, LatentCacheError
    )


def test_data_group_needs_exactly_one_source(compose_cfg, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    with pytest.raises(Exception, match=r"set exactly one of data\.shards"):
        instantiate(compose_cfg([]).data)
    cfg = compose_cfg(["data=latents", f"data.latents={tmp_path}"])
    with pytest.raises(Exception, match=r"manifest\.json missing"):
        instantiate(cfg.data)
