"""What a run keeps on disk (the newest ``keep_last`` periodic checkpoints, ``last.ckpt``,
``best.ckpt``, the exports), on-demand export of any checkpoint (``python -m training.export``),
and ``genprop-plan``'s disk figures against the files a tiny CPU run wrote.

Size tolerance: see ``disk_checks.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from disk_checks import assert_same_tensors, assert_size, size_on_disk
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from safetensors.torch import load_file
from shard_factory import tiny_overrides

from genprop.modeling.model import GenPropModel
from genprop.scale.memory_plan import ClusterSpec
from training.callbacks import ExportCallback, PeriodicCheckpoint
from training.export import main as export_main
from training.plan import disk_spec, plan_from_config
from training.plan import main as plan_main
from training.train import CONF_DIR, register_resolvers, train


def _overrides(shard_dir: Path, run_dir: Path) -> list[str]:
    """6 steps, a checkpoint every 2 (each on a data epoch's last batch), validation every 3."""
    return [
        "experiment=tiny_cpu",
        *tiny_overrides(shard_dir, run_dir),
        "trainer.max_steps=6",
        "data.epoch_batches=2",
        "trainer.val_check_interval=3",
        "callbacks.periodic_checkpoint.every_n_train_steps=2",
        "callbacks.periodic_checkpoint.keep_last=2",
        "logger=csv",
    ]


def _compose(overrides: list[str]) -> DictConfig:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.fixture(scope="module")
def run(shard_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    run_dir = tmp_path_factory.mktemp("run")
    overrides = _overrides(shard_dir, run_dir)
    train(_compose(overrides))
    return run_dir, overrides


def test_keeps_the_newest_periodic_checkpoints_last_and_best(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    # step 2 removed by Lightning's top-k; none deferred to a validation step (3 or 6).
    assert kept == ["best.ckpt", "last.ckpt", "step00000004.ckpt", "step00000006.ckpt"]
    assert sorted(p.name for p in (run_dir / "export").iterdir()) == ["best", "last"]


def test_a_resumed_run_goes_on_removing_the_oldest(shard_dir: Path, tmp_path: Path) -> None:
    """The kept checkpoints are callback state, restored from last.ckpt."""
    overrides = [*_overrides(shard_dir, tmp_path), "trainer.max_steps=4"]
    train(_compose(overrides))
    train(_compose([*overrides, "trainer.max_steps=8", "resume=auto"]))
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["best.ckpt", "last.ckpt", "step00000006.ckpt", "step00000008.ckpt"]


def test_any_checkpoint_exports_on_demand(run: tuple[Path, list[str]], tmp_path: Path) -> None:
    run_dir, overrides = run
    ckpts = run_dir / "checkpoints"
    for name, export in (("last.ckpt", "last"), ("best.ckpt", "best")):
        assert export_main([str(ckpts / name), str(tmp_path / name), *overrides]) == 0
        # export/best is the best checkpoint's model, not the first best's.
        assert_same_tensors(tmp_path / name, run_dir / "export" / export)
    step4 = tmp_path / "step4"
    assert export_main([str(ckpts / "step00000004.ckpt"), str(step4), *overrides]) == 0
    assert GenPropModel.from_pretrained(step4).config.num_frames == 4
    earlier = load_file(str(step4 / "model.safetensors"))
    final = load_file(str(run_dir / "export" / "last" / "model.safetensors"))
    name = next(n for n in final if n.startswith("content_encoder."))
    assert not torch.equal(earlier[name], final[name])  # the EMA of step 4, not of step 6


def test_planned_disk_sizes_match_the_files(run: tuple[Path, list[str]]) -> None:
    run_dir, overrides = run
    disk = plan_from_config(_compose([*overrides, "+plan.compare_without_checkpointing=false"]))
    assert disk.disk is not None
    plan = disk.disk
    for ckpt in (run_dir / "checkpoints").iterdir():
        assert_size(size_on_disk(ckpt), plan.checkpoint_gb)
    export = run_dir / "export"
    assert_size(size_on_disk(export / "last" / "model.safetensors"), plan.export_gb)
    assert plan.checkpoints_kept == 4 and plan.exports_kept == 2  # 2 periodic, last, best
    weights = size_on_disk(run_dir / "checkpoints") + sum(
        size_on_disk(export / e / "model.safetensors") for e in ("last", "best")
    )
    assert plan.total_gb is not None and plan.peak_gb is not None
    assert_size(weights, plan.total_gb)
    assert plan.peak_gb == pytest.approx(plan.total_gb + plan.checkpoint_gb)


def test_export_refuses_a_missing_checkpoint_or_other_overrides(
    run: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, overrides = run
    last = str(run_dir / "checkpoints" / "last.ckpt")
    out = str(tmp_path / "out")
    cases = {
        "no checkpoint file": [str(tmp_path / "nope.ckpt"), out],
        "overrides.yaml": [last, out],  # an in-process run recorded no overrides
        "does not fit the model": [last, out, *overrides, "+model.net.overrides.sce_blocks=1"],
        "trainer=fsdp": [str(tmp_path), out, *overrides],  # a sharded folder, unsharded config
    }
    (tmp_path / "meta.pt").write_bytes(b"")  # looks like a sharded folder
    for needle, args in cases.items():
        assert export_main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("python -m training.export: error:")
        assert needle in err[0]


@pytest.mark.parametrize("keep_last", [0, -1, True, "2", 1.5])
def test_keep_last_must_be_a_positive_integer(keep_last: object) -> None:
    with pytest.raises(ValueError, match=r"keep_last: expected a positive integer .* got"):
        PeriodicCheckpoint(keep_last=keep_last, dirpath="x")  # type: ignore[arg-type]


def test_planner_refuses_a_bad_keep_last_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_main(["experiment=tiny_cpu", "callbacks.periodic_checkpoint.keep_last=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keep_last: expected a positive integer" in err[0]


def test_auto_exports_each_best_of_unsharded_models_only(
    monkeypatch: pytest.MonkeyPatch,
    compose_cfg: Callable[[list[str]], DictConfig],
) -> None:
    module = SimpleNamespace(net=torch.nn.Linear(1, 1))
    auto, always = ExportCallback(dirpath="x"), ExportCallback(dirpath="x", export_best=True)
    assert auto.exports_best(module) and always.exports_best(module)  # type: ignore[arg-type]
    monkeypatch.setattr("training.callbacks.is_sharded", lambda net: True)
    assert not auto.exports_best(module) and always.exports_best(module)  # type: ignore[arg-type]
    # genprop-plan counts the exports the same way.
    single = ClusterSpec(strategy="single")
    assert disk_spec(compose_cfg(["experiment=tiny_cpu"]), single, None).exports == 2
    for export_best, exports in (("auto", 1), ("true", 2)):
        overrides = ["trainer=fsdp", f"callbacks.export.export_best={export_best}"]
        cfg = compose_cfg(["experiment=tiny_cpu", *overrides])
        assert disk_spec(cfg, ClusterSpec(strategy="fsdp"), cfg.trainer.strategy).exports == exports


def test_export_best_is_true_false_or_auto() -> None:
    with pytest.raises(ValueError, match=r"export_best: expected true, false or auto, got 'yes'"):
        ExportCallback(dirpath="x", export_best="yes")


def test_configs_keep_two_periodic_checkpoints_and_wan_exports_only_at_the_end(
    tmp_path: Path,
) -> None:
    cfg = _compose(["experiment=tiny_cpu", f"paths.run_dir={tmp_path}"])
    periodic = instantiate(cfg.callbacks.periodic_checkpoint)
    assert isinstance(periodic, PeriodicCheckpoint)
    assert (periodic.save_top_k, periodic.monitor, periodic.save_last) == (2, "step", True)
    assert instantiate(cfg.callbacks.export).export_best == "auto"
    wan = _compose(["experiment=wan_paper"])
    assert wan.callbacks.export.export_best is False
    keep_all = PeriodicCheckpoint(keep_last=None, dirpath=str(tmp_path))
    assert keep_all.save_top_k == -1 and keep_all.monitor is None
