"""``genprop-plan`` (training.plan): the config of genprop-train, planned on the meta device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.jsonfile import read_json_object
from genprop.scale.meta_model import write_config_folder
from training.plan import main

WAN_CONFIGS = Path(__file__).resolve().parents[1] / "genprop" / "wan_configs"

KEYS = {"backbone_params", "trainable_params", "gpu_memory_gb", "fits", "pflop_per_step", "tokens"}


def _plan(capsys: pytest.CaptureFixture[str], *overrides: str) -> dict:
    assert main(list(overrides)) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "genprop-plan" in out[0]  # the table's title comes first
    return json.loads(out[-1])


def test_last_line_is_the_plan_of_the_composed_training_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = _plan(capsys, "experiment=tiny_cpu")
    assert set(record) >= KEYS
    # the default capacity: an H100-80GB's 79.2 GiB
    assert record["fits"] is True and record["gpu_capacity_gb"] == 85.0
    assert record["tokens"] == 64 and record["batch_size_per_gpu"] == 2  # tiny_cpu's batch
    assert record["strategy"] == "single" and record["precision"] == "32-true"
    assert record["trainable_params"] < record["backbone_params"]
    assert record["l_grad"] is True and record["memory_gb"]["activations_no_checkpointing"] > 0


def test_sharded_multi_gpu_config_without_l_grad(capsys: pytest.CaptureFixture[str]) -> None:
    record = _plan(
        capsys,
        "model.net.preset_name=cpu_test",
        "trainer=fsdp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "model.loss_weights.grad=0",
        "model.net.gradient_checkpointing=true",
        "cluster.gpu_memory_gb=0.000001",
    )
    assert record["strategy"] == "fsdp" and record["world_size"] == 8
    assert record["precision"] == "bf16-mixed"  # the sharded strategy's compute dtype
    assert record["l_grad"] is False and record["checkpointing"] is True
    assert record["fits"] is False and record["gpu_capacity_gb"] == 1e-6
    memory = record["memory_gb"]
    assert memory["activations_checkpointing"] < memory["activations_no_checkpointing"]
    assert record["pflop_per_step"] == pytest.approx(8 * record["pflop_per_gpu_step"], rel=1e-3)


def test_bad_override_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model.net.preset_name=nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genprop-plan:") and "nope" in err[0]


def test_help_prints_the_usage_and_other_flags_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    assert "genprop-plan experiment=wan_paper" in capsys.readouterr().out
    assert main(["experiment=demo_genprop", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--dry-run" in err and "KEY=VALUE" in err


def test_a_run_that_does_not_fit_gets_the_smallest_change_that_makes_it_fit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 0.92 x 0.008 GB usable: tiny_cpu needs 0.0082 GB with L_grad, 0.0068 GB without it.
    record = _plan(capsys, "experiment=tiny_cpu", "cluster.gpu_memory_gb=0.008")
    assert record["fits"] is False
    change = record["fits_with"]
    assert change in ("model.net.overrides.sce_blocks=1", "model.loss_weights.grad=0")
    with_it = _plan(capsys, "experiment=tiny_cpu", "cluster.gpu_memory_gb=0.008", change)
    assert with_it["fits"] is True and with_it["fits_with"] is None
    nothing = _plan(capsys, "experiment=tiny_cpu", "cluster.gpu_memory_gb=0.000001")
    assert nothing["fits"] is False and nothing["fits_with"] is None


def test_sequence_parallel_is_planned_as_one_rank_of_its_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["model.net.preset_name=cpu_test", "trainer=fsdp", "trainer.devices=2"]
    one = _plan(capsys, *base, "trainer.sequence_parallel=1", "+plan.suggest=false")
    two = _plan(capsys, *base, "trainer.sequence_parallel=2", "+plan.suggest=false")
    assert (one["sequence_parallel"], two["sequence_parallel"]) == (1, 2)
    act = "activations_no_checkpointing"
    assert two["memory_gb"][act] < one["memory_gb"][act]  # each rank holds half the tokens
    # one sample per group: half the samples per step, each split over two GPUs
    assert two["pflop_per_gpu_step"] < one["pflop_per_gpu_step"]
    auto = _plan(capsys, *base, "trainer.sequence_parallel=auto", "+plan.suggest=false")
    assert auto["sequence_parallel"] == 2  # every device of the node


@pytest.mark.parametrize("published", ["wan2.1-i2v-14b-480p.json", "wan2.2-i2v-a14b.json"])
def test_the_papers_run_fits_one_8_gpu_node(
    published: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's interface: the paper's 81x480x832 clips with L_grad, from a latent cache (the
    folder need not exist to plan), on 8x H100-80GB, for both published 14B configs."""
    configs = read_json_object(WAN_CONFIGS / published, what="published configs")
    folder = write_config_folder(configs, tmp_path / "wan")
    record = _plan(
        capsys,
        "experiment=wan_paper",
        f"model.net.pretrained={folder}",
        "model.net.overrides.num_frames=81",
        "trainer.devices=8",
        f"data.latents={tmp_path / 'cache'}",
        "+plan.compare_without_checkpointing=false",
    )
    assert record["fits"] is True and record["l_grad"] is True
    assert record["tokens"] == 21 * 30 * 52 and record["sequence_parallel"] == 8
    assert record["encoder_params"] == 0 and record["memory_gb"]["encoders"] == 0
    assert record["gpu_memory_gb"] <= 0.92 * 85.0 and record["checkpoint_gb"] > 100


def test_propagation_is_planned_with_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    """The ``propagation`` object: defaults bf16 / none / 1, ``+propagate.*`` change them."""
    default = _plan(capsys, "experiment=tiny_cpu", "+plan.suggest=false")["propagation"]
    assert (default["dtype"], default["offload"], default["sequence_parallel"]) == (
        "bf16",
        "none",
        1,
    )
    assert default["fits"] is True and default["gpu_memory_gb"] > 0
    record = _plan(
        capsys,
        "experiment=tiny_cpu",
        "+propagate.dtype=fp32",
        "+propagate.offload=sequential",
        "+propagate.guidance=4",
        "cluster.gpu_memory_gb=0.000001",
        "+plan.suggest=false",
    )["propagation"]
    assert (record["dtype"], record["offload"], record["cfg"]) == ("fp32", "sequential", True)
    assert record["fits"] is False
    assert (
        record["memory_gb"]["weights"] < default["memory_gb"]["weights_all"] * 2
    )  # fp32, streamed
    assert record["memory_gb"]["activations_denoise"] > default["memory_gb"]["activations_denoise"]


def test_the_demos_latent_model_is_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make demo`'s model: the DiT on a learned codec's latents, propagated in bf16 (the codec's
    # convolutions cast, its latent statistics kept in fp32).
    from genprop.modeling.learned_codec import LearnedVideoCodec

    codec = LearnedVideoCodec(
        latent_channels=16, width=8, downsamples=0, unshuffle=4, linear_skip=1
    ).save(tmp_path / "codec")
    record = _plan(
        capsys,
        "experiment=demo_latent_genprop",
        f"model.net.overrides.codec.path={codec}",
        f"data.latents={tmp_path / 'latents'}",
    )
    assert record["tokens"] == 512 and record["fits"] is True
    assert record["encoder_params"] == sum(p.numel() for p in codec_params(codec))
    assert record["propagation"]["dtype"] == "bf16" and record["propagation"]["fits"] is True


def codec_params(folder: Path) -> list:
    from genprop.modeling.learned_codec import load_codec

    return list(load_codec(folder).parameters())
