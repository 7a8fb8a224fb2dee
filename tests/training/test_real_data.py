"""End to end on real data: genprop-data builds shards from ../shared/data, training reads them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from shard_factory import tiny_overrides

from genprop.modeling.model import GenPropModel
from training.train import train


def test_train_on_shards_built_from_real_vos_data(
    shared_data: Path, tmp_path: Path, compose_cfg
) -> None:
    shards = tmp_path / "shards"
    cmd = [
        str(Path(sys.executable).parent / "genprop-data"),
        "source=vos",
        f"source.root={shared_data / 'vos'}",
        f"output_dir={shards}",
        "num_samples=4",
        "samples_per_shard=2",
        "clip.frames=4",
        "clip.size=32",
        "ray.enabled=false",
        "progress=false",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tmp_path, run_dir)
    overrides = [o for o in overrides if not o.startswith(("data.shards", "data.val_shards"))]
    cfg = compose_cfg(
        [
            "experiment=tiny_cpu",
            *overrides,
            f"data.shards={shards}",
            "data.val_shards=null",
            "trainer.max_steps=2",
            "logger=csv",
        ]
    )
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/total"]))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2
    GenPropModel.from_pretrained(run_dir / "export" / "last")
