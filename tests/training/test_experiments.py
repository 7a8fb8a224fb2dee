"""Every experiment and every ablation composes from the real config tree and runs one step
(fast_dev_run); ablations change only what they name, at demo and paper size alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf
from shard_factory import tiny_overrides

from genprop.modeling.codec import build_codec
from genprop.modeling.learned_codec import LearnedVideoCodec
from genprop.sampling_options import PreserveConfig
from training.model_factory import build_config
from training.train import CONF_DIR, register_resolvers, resolve_precision, train

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
ABLATIONS = sorted(p.stem for p in (CONF_DIR / "ablation").glob("*.yaml"))
# Experiments on a pretrained backbone need its folder; test_wan_training.py runs them on a tiny
# random Wan pipeline instead.
NEEDS_PRETRAINED = {"wan_paper"}
# Experiments on a learned codec need its folder: test_latent_experiment_fast_dev_run gives one.
NEEDS_CODEC = {"demo_latent_i2v", "demo_latent_genprop"}
# What each ablation changes, checked on the composed config.
ABLATION_EFFECTS = {
    "no_mpd": lambda c: c.model.loss_weights.mpd == 0.0,
    "no_ra_loss": lambda c: c.model.loss_weights.mask == 1.0 and c.model.loss_weights.grad == 0,
    "no_color_fill": lambda c: c.data.task_weights.tracking == 0.0,
    "gate": lambda c: OmegaConf.select(c, "model.net.overrides.content_gate") is True,
}


def test_all_experiments_and_ablations_listed() -> None:
    assert set(EXPERIMENTS) == {
        "paper",
        "i2v_pretrain",
        "tiny_cpu",
        "demo_i2v",  # `make demo-pixel` stage 1, the recipe demo_latent_i2v inherits
        "demo_genprop",  # `make demo-pixel` stage 2, the recipe demo_latent_genprop inherits
        "toy_gpu_i2v",  # `make demo-gpu` stage 1
        "toy_gpu",  # `make demo-gpu` stage 2
        "wan_paper",
        "demo_latent_i2v",  # `make demo` stage 1
        "demo_latent_genprop",  # `make demo` stage 2, the base of `make ablate`
    }
    assert set(ABLATIONS) == set(ABLATION_EFFECTS)


@pytest.mark.parametrize("experiment", sorted(set(EXPERIMENTS) - NEEDS_PRETRAINED - NEEDS_CODEC))
def test_experiment_fast_dev_run(
    experiment: str, shard_dir: Path, tmp_path: Path, compose_cfg
) -> None:
    cfg = compose_cfg(
        [f"experiment={experiment}", *tiny_overrides(shard_dir, tmp_path), "debug=fdr"]
    )
    assert cfg.trainer.fast_dev_run is True
    metrics = train(cfg)
    assert metrics["train/total"] > 0
    assert "val/total" in metrics


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablation_fast_dev_run(ablation: str, shard_dir: Path, tmp_path: Path, compose_cfg) -> None:
    overrides = ["experiment=demo_genprop", f"ablation={ablation}"]
    cfg = compose_cfg([*overrides, *tiny_overrides(shard_dir, tmp_path), "debug=fdr"])
    assert ABLATION_EFFECTS[ablation](cfg), ablation
    metrics = train(cfg)
    assert metrics["train/total"] > 0
    assert "val/total" in metrics


def test_paper_recipe_values(compose_cfg) -> None:
    cfg = compose_cfg(["experiment=paper", "data.shards=x"])
    m = cfg.model
    assert (m.loss_weights.mask, m.loss_weights.grad, m.loss_weights.mpd) == (2.0, 1.0, 1.0)
    assert m.optimizer._target_ == "torch.optim.AdamW" and m.optimizer.lr == 5e-5
    assert m.optimizer._partial_ and m.scheduler._partial_
    assert m.scheduler._target_ == "training.schedule.warmup_cosine"
    assert m.stage == "genprop" and m.train_backbone is False
    assert cfg.trainer.gradient_clip_val == 1.0
    assert (
        resolve_precision(OmegaConf.create({"accelerator": "cpu", "precision": None})) == "32-true"
    )
    assert compose_cfg(["experiment=i2v_pretrain", "data.shards=x"]).model.stage == "i2v"


@pytest.mark.parametrize("experiment", ["paper", "demo_genprop"])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablation_changes_only_what_it_names(experiment: str, ablation: str, compose_cfg) -> None:
    # The same ablation at paper and demo size: the experiment's config with the ablated keys
    # changed and the ablation's name appended to the run name, nothing else.
    common = [f"experiment={experiment}", "data.shards=x", "paths.run_dir=RUN"]
    base, cfg = compose_cfg(common), compose_cfg([*common, f"ablation={ablation}"])
    assert ABLATION_EFFECTS[ablation](cfg) and not ABLATION_EFFECTS[ablation](base)
    assert cfg.name == f"{experiment}_{ablation}"
    changed = {
        "no_mpd": {"model.loss_weights.mpd"},
        "no_ra_loss": {"model.loss_weights.mask", "model.loss_weights.grad"},
        "no_color_fill": {"data.task_weights.tracking"},
        "gate": {"model.net.overrides.content_gate"},
    }[ablation] | {"name", "name_suffix"}
    assert _diff(_flat(base), _flat(cfg)) == changed


def test_explicit_name_replaces_the_ablated_run_name(compose_cfg) -> None:
    # `make ablate` names each run after its ablation alone (outputs/demo/ablate/<name>).
    overrides = ["experiment=demo_genprop", "ablation=no_mpd", "data.shards=x"]
    assert compose_cfg([*overrides, "name=no_mpd"]).name == "no_mpd"
    assert compose_cfg(["data.shards=x"]).name == "default"


@pytest.mark.parametrize(
    ("experiment", "preset_name"),
    [("demo_genprop", "demo"), ("demo_latent_genprop", "demo_latent")],
)
def test_demo_stage2_trains_backbone_and_ablations_inherit(
    experiment: str, preset_name: str, compose_cfg
) -> None:
    # The demo's tiny from-scratch backbone is trained in stage 2 (the paper freezes its large
    # pretrained one); a demo ablation (`make ablate` runs them on demo_latent_genprop) keeps
    # that, the lr, the preset and the codec folder.
    codec = ["model.net.overrides.codec.path=CODEC"] if preset_name == "demo_latent" else []
    common = ["data.shards=x", *codec]
    base = compose_cfg([f"experiment={experiment}", *common]).model
    assert base.stage == "genprop" and base.train_backbone is True
    assert base.net.preset_name == preset_name
    for name in ABLATIONS:
        m = compose_cfg([f"experiment={experiment}", f"ablation={name}", *common]).model
        assert m.train_backbone is True and m.optimizer.lr == base.optimizer.lr, name
        assert m.net.preset_name == preset_name, name
        if codec:
            assert m.net.overrides.codec.path == "CODEC", name


def _flat(cfg: DictConfig) -> dict[str, object]:
    """Resolved leaf values of a composed config by dotted key."""

    def walk(node: object, prefix: str) -> dict[str, object]:
        if not isinstance(node, dict):
            return {prefix: node}
        return {k: v for key, sub in node.items() for k, v in walk(sub, f"{prefix}.{key}").items()}

    return walk(OmegaConf.to_container(cfg, resolve=True), "")


def _diff(a: dict[str, object], b: dict[str, object]) -> set[str]:
    return {
        k.lstrip(".") for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>")
    }


def test_demo_export_carries_the_sampling_defaults_chosen_on_validation(compose_cfg) -> None:
    """What `make demo`'s export samples with unless told otherwise (docs/experiments.md)."""
    cfg = compose_cfg(["experiment=demo_genprop", "data.shards=x"])
    built = build_config(preset_name=cfg.model.net.preset_name, overrides=cfg.model.net.overrides)
    sampling = built.sampling
    assert (sampling.steps, sampling.guidance) == (16, 3.0)
    assert sampling.task_guidance == {"removal": 8.0, "tracking": 12.0}
    assert sampling.preserve == PreserveConfig(
        mode="pixel",
        source="change",
        threshold=0.1,
        opening=1,
        link_radius=1,
        fixed_region_tasks=["outpainting"],
        dilate=1,
        blur=1.0,
    )
    assert sampling.mask_threshold == 0.4
    assert sampling.task_mask_threshold == {
        "insertion": 0.05,
        "edit": 0.15,
        "tracking": 0.1,
        "outpainting": 0.35,
    }


@pytest.mark.parametrize("cluster", ["slurm", "slurm_multinode"])
def test_slurm_cluster_configs(cluster: str) -> None:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"cluster={cluster}",
                "trainer.accelerator=gpu",
                "trainer.devices=4",
                "data.shards=x",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 4  # one task per GPU
    assert launcher.nodes == cfg.trainer.num_nodes == (2 if cluster == "slurm_multinode" else 1)
    assert launcher.mem_gb == 4 * cfg.cluster.mem_gb_per_task
    assert launcher.max_num_timeout == cfg.cluster.max_requeues
    assert launcher.additional_parameters.requeue is True
    assert cfg.trainer.devices == 4 and cfg.resume == "auto"


def test_gradient_checkpointing_switch(shard_dir: Path, tmp_path: Path, compose_cfg) -> None:
    overrides = ["experiment=paper", *tiny_overrides(shard_dir, tmp_path), "debug=fdr"]
    cfg = compose_cfg([*overrides, "model.net.gradient_checkpointing=true"])
    module = instantiate(cfg.model)
    assert module.net.backbone.gradient_checkpointing is True
    assert train(cfg)["train/total"] > 0


def test_submitit_local_cluster_config() -> None:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["cluster=submitit_local", "data.shards=x"], return_hydra_config=True
        )
    assert cfg.hydra.launcher._target_.endswith("LocalLauncher")
    assert "submitit" in cfg.hydra.launcher._target_ and cfg.resume == "auto"


# ------------------------------------------------------------ the latent miniature (`make demo`)
LATENT_EXPERIMENTS = {"demo_latent_i2v": "demo_i2v", "demo_latent_genprop": "demo_genprop"}


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learned codec folder as stage 0 writes it: 6 latent channels, 4x spatial."""
    codec = LearnedVideoCodec(latent_channels=6, width=4, downsamples=2)
    return codec.save(tmp_path_factory.mktemp("stage0") / "codec")


@pytest.mark.parametrize(("experiment", "base"), sorted(LATENT_EXPERIMENTS.items()))
def test_latent_experiments_are_the_demo_recipe_on_the_learned_codec(
    experiment: str, base: str, tiny_codec: Path, compose_cfg
) -> None:
    common = ["data.shards=x", "paths.run_dir=RUN"]
    ref = compose_cfg([f"experiment={base}", *common])
    # The pixel demo's recipe (stage, optimiser, loss, schedule, data, trainer); only the run
    # name, the preset and the codec folder differ.
    cfg = compose_cfg(
        [f"experiment={experiment}", f"model.net.overrides.codec.path={tiny_codec}", *common]
    )
    # Stage 2's sampling defaults are its own (chosen on the validation cases for this model).
    tuned = {
        f"model.net.overrides.sampling.{key}"
        for key in (
            "guidance",
            "mask_threshold",
            "task_guidance.removal",
            "task_guidance.tracking",
            "task_guidance.edit",
            "task_guidance.insertion",
            "task_mask_threshold.tracking",
            "task_mask_threshold.outpainting",
        )
    }
    assert _diff(_flat(ref), _flat(cfg)) == {
        "name",
        "model.net.preset_name",
        "model.net.overrides.codec.path",
    } | (tuned if experiment == "demo_latent_genprop" else set())
    built = build_config(preset_name=cfg.model.net.preset_name, overrides=cfg.model.net.overrides)
    assert built.codec.kind == "learned" and built.codec.path == str(tiny_codec)
    assert build_codec(built.codec).latent_channels == 6  # the folder's codec.json decides
    demo = build_config(preset_name=ref.model.net.preset_name, overrides=ref.model.net.overrides)
    # 2x2 patches on the 16x16 latent grid: the pixel demo's 8x8 tokens per frame.
    grid = [built.height // (4 * built.backbone.patch), built.width // (4 * built.backbone.patch)]
    demo_grid = [demo.height // (demo.codec.patch * demo.backbone.patch)] * 2
    assert grid == demo_grid == [8, 8] and built.num_frames == demo.num_frames
    # The pixel demo's sampling defaults (steps, preservation), but for stage 2's guidance and
    # MPD thresholds (chosen on the validation cases for the latent model).
    if experiment == "demo_latent_genprop":
        guidance = {"removal": 5.0, "tracking": 5.0, "edit": 1.0, "insertion": 1.0}
        assert (built.sampling.guidance, built.sampling.task_guidance) == (5.0, guidance)
        assert built.sampling.guidance_for("outpainting") == 5.0
        assert built.sampling.mask_threshold == 0.25
        assert built.sampling.task_mask_threshold == {
            "insertion": 0.05,
            "edit": 0.15,
            "tracking": 0.25,
            "outpainting": 0.65,
        }
        assert demo.sampling.task_guidance == {"removal": 8.0, "tracking": 12.0}
        for key in ("guidance", "task_guidance", "mask_threshold", "task_mask_threshold"):
            setattr(demo.sampling, key, getattr(built.sampling, key))
    assert built.sampling == demo.sampling


def test_latent_experiments_need_the_codec_folder(compose_cfg) -> None:
    cfg = compose_cfg(["experiment=demo_latent_i2v", "data.shards=x"])
    with pytest.raises(MissingMandatoryValue, match=r"codec\.path"):
        OmegaConf.to_container(cfg.model.net, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize("experiment", sorted(LATENT_EXPERIMENTS))
def test_latent_experiment_fast_dev_run(
    experiment: str, tiny_codec: Path, shard_dir: Path, tmp_path: Path, compose_cfg
) -> None:
    # The cpu_test preset with the learned codec: 4x32x32 clips -> 4x8x8x6 latents.
    overrides = [f"experiment={experiment}", *tiny_overrides(shard_dir, tmp_path), "debug=fdr"]
    codec = f"model.net.overrides.codec.path={tiny_codec}"
    cfg = compose_cfg([*overrides, codec, "+model.net.overrides.codec.kind=learned"])
    module = instantiate(cfg.model)
    assert module.net.codec.latent_channels == 6
    metrics = train(cfg)
    assert metrics["train/total"] > 0
    assert "val/total" in metrics
