"""NaN and inf never train on: skipped and counted steps, a bounded run of them, no non-finite
export, and cached latents holding NaN counted as corrupt samples."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import webdataset as wds
from shard_factory import tiny_overrides

from contracts.tasks import TASKS
from genprop.configs import preset
from genprop.modeling.model import GenPropModel
from training import export as export_cli
from training.cache.latent_sample import decode_members, encode_members
from training.callbacks import ExportCallback
from training.ema import ParameterEMA
from training.latent_datamodule import LatentStream
from training.module import GenPropLitModule
from training.nonfinite import NonFiniteError
from training.train import _hydra_entry, train

NAN_STEPS = (2, 3)


@pytest.fixture
def nan_at_some_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loss of steps ``NAN_STEPS`` is NaN (as from a bad batch), the others are finite."""
    compute = GenPropLitModule.compute_losses

    def patched(self, batch, *, seed: int, step: int) -> dict[str, torch.Tensor]:
        losses = compute(self, batch, seed=seed, step=step)
        if self.training and step in NAN_STEPS:
            losses["total"] = losses["total"] * float("nan")
        return losses

    monkeypatch.setattr(GenPropLitModule, "compute_losses", patched)


def test_nonfinite_steps_make_no_update_and_are_counted(
    shard_dir: Path, tmp_path: Path, compose_cfg, nan_at_some_steps: None
) -> None:
    run = tmp_path / "run"
    steps = 6
    cfg = compose_cfg(
        [
            *tiny_overrides(shard_dir, run),
            f"trainer.max_steps={steps}",
            "trainer.val_check_interval=6",
            "trainer.log_every_n_steps=1",
            "callbacks.periodic_checkpoint.every_n_train_steps=6",
        ]
    )
    metrics = train(cfg)
    assert metrics["train/nonfinite_steps"] == len(NAN_STEPS)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == steps
    updates = steps - len(NAN_STEPS)
    adam_steps = {float(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert adam_steps == {float(updates)}  # the optimizer skipped the NaN steps entirely
    assert ckpt["ema"]["num_updates"] == updates  # and so did the EMA
    assert ckpt["nonfinite"] == {"total": len(NAN_STEPS), "consecutive": 0}
    weights = {**ckpt["state_dict"], **ckpt["ema"]["shadow"]}
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())
    GenPropModel.from_pretrained(run / "export" / "last")  # exported, finite


def test_diverging_run_stops_with_one_line_and_no_export(
    shard_dir: Path, tmp_path: Path, compose_cfg, capsys
) -> None:
    run = tmp_path / "run"
    cfg = compose_cfg(
        [
            *tiny_overrides(shard_dir, run),
            "model.optimizer.lr=1e12",
            "model.max_consecutive_nonfinite=3",
            "trainer.max_steps=30",
            "trainer.val_check_interval=30",
        ]
    )
    with pytest.raises(SystemExit) as info:
        _hydra_entry(cfg)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("genprop-train: error: step "), err[-1]
    assert "NaN or inf for 3 steps in a row" in err[-1]
    assert "max_consecutive_nonfinite=3" in err[-1]
    assert not (run / "export").exists()


def _cpu_test_module() -> SimpleNamespace:
    net = GenPropModel(preset("cpu_test"), load_weights=False)
    net.requires_grad_(False)
    for p in net.trainable_parameters("genprop"):
        p.requires_grad_(True)
    return SimpleNamespace(net=net, ema=ParameterEMA(net, decay=0.9))


def test_export_callback_refuses_nonfinite_weights(tmp_path: Path) -> None:
    module = _cpu_test_module()
    name = next(iter(module.ema.shadow))
    module.ema.shadow[name][0] = float("nan")
    with pytest.raises(NonFiniteError, match=rf"refusing to export: weight '{name}'"):
        ExportCallback(dirpath=str(tmp_path)).export(module, "last")  # type: ignore[arg-type]
    assert not (tmp_path / "last").exists()


def test_export_cli_refuses_a_checkpoint_with_nonfinite_weights(
    shard_dir: Path, tmp_path: Path, compose_cfg, capsys
) -> None:
    run = tmp_path / "run"
    overrides = [
        *tiny_overrides(shard_dir, run),
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "callbacks.periodic_checkpoint.every_n_train_steps=1",
        "callbacks.export=null",
    ]
    train(compose_cfg(overrides))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    name = sorted(ckpt["ema"]["shadow"])[0]
    ckpt["ema"]["shadow"][name].fill_(float("inf"))
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    out = tmp_path / "out"
    assert export_cli.main([str(bad), str(out), *overrides]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{export_cli.PROG}: error: {out}"), err
    assert f"weight '{name}' holds NaN or inf" in err[0]
    assert not out.exists()


def _latent_member(key: str, *, poison: str | None = None) -> dict:
    tensors = {
        "target": torch.randn(2, 4, 2, 2),
        "first_latent": torch.randn(1, 4, 2, 2),
        "context": torch.randn(3, 8),
        "context_mask": torch.ones(3, dtype=torch.bool),
    }
    if poison is not None:
        tensors[poison][0, 0] = float("nan")
    return encode_members(key, tensors, {"task": TASKS[0], "prompt": "p"}, "fp32")


def test_cached_latents_with_nan_are_corrupt_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tensor 'context' holds NaN or inf"):
        decode_members(_latent_member("k", poison="context"))
    tar = tmp_path / "latents-000000.tar"
    with wds.TarWriter(str(tar)) as sink:
        for i in range(6):
            sink.write(_latent_member(f"s{i}", poison="target" if i in (1, 4) else None))
    stream = LatentStream(
        empty_prompt=None, urls=[str(tar)], batch_size=2, resampled=False, epoch_batches=None
    )
    batches = list(stream)
    assert sum(b["encoded"].target.shape[0] for b in batches) == 4
    assert sum(int(b["skipped"]) for b in batches) == 2
    assert all(math.isfinite(float(b["encoded"].target.sum())) for b in batches)
