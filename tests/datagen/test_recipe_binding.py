"""Task -> recipe is configuration: the real config's ``_target_`` nodes, swaps by YAML alone, and
one-line errors naming the key of a bad recipe node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from synth_records import tiny_dataset
from test_runner import CONF, job_cfg, read_all

from contracts.tasks import TASKS, TRACKING_PROMPT
from datagen.cli import run_shards
from datagen.job_config import ConfigError, check_job_config
from datagen.recipes import (
    BorderFill,
    ColorFill,
    CopyPaste,
    MaskFill,
    Recipe,
    RecipeNeeds,
    RecipeOutput,
    build_recipes,
    check_task,
)
from datagen.record import Clip
from datagen.runner import run_job

STRIPES = "{_target_: test_recipe_binding.Stripes, task: insertion, period: 3}"


def real_recipes(*overrides: str) -> dict[str, Recipe]:
    """The recipes of the real ``genprop_data`` config, with ``overrides``."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("genprop_data", list(overrides))
    return build_recipes(OmegaConf.to_container(cfg.recipes, resolve=True))


class Stripes:
    """A recipe bound by YAML only: blacks out every ``period``-th row of the instance.

    Its needs are ones the builder has no task code for: a partner clip for insertion (so the plan
    draws insertion samples a partner video) and every instance's masks; its fixed prompt is its
    own.
    """

    name = "stripes"
    needs = RecipeNeeds(partner=True, all_masks=True, prompt="paint stripes")

    def __init__(self, *, task: str = "insertion", period: int = 2) -> None:
        self.task, self.period = check_task(task, ("edit", "insertion")), period

    def __call__(
        self, clip: Clip, rng: np.random.Generator, *, partner: Clip | None = None
    ) -> RecipeOutput:
        object_id = clip.object_ids[0]
        masks = clip.masks[object_id].copy()
        masks[:, 1 :: self.period] = False
        sce = clip.frames.copy()
        sce[masks] = 0
        assert partner is not None
        return RecipeOutput(
            sce=sce,
            first=clip.frames[0].copy(),
            target=clip.frames,
            mask=masks.astype(np.uint8),
            object_ids=[object_id],
            params={"instances": sorted(clip.masks), "partner_video": partner.video_id},
        )


@pytest.fixture
def data(tmp_path) -> Path:
    tiny_dataset(tmp_path / "data", videos=2)
    return tmp_path / "data"


def test_real_config_binds_every_task_and_keeps_the_option_paths():
    recipes = real_recipes(
        "recipes.copy_paste.synthetic_effects=0.5",  # the Makefile's DEMO_DATA_ARGS
        "mix=demo",
        "recipes.mean_fill.grow=9",
        "recipes.border_fill.width_range=[0.2,0.3]",
    )
    assert list(recipes) == list(TASKS)
    assert {t: (type(r), getattr(r, "fill", None)) for t, r in recipes.items()} == {
        "removal": (CopyPaste, None), "edit": (MaskFill, "mean"),
        "insertion": (MaskFill, "telea"), "tracking": (ColorFill, None),
        "outpainting": (BorderFill, None),
    }  # fmt: skip
    assert all(r.task == t for t, r in recipes.items())
    assert recipes["removal"].synthetic_effects == 0.5 and recipes["edit"].grow == 9
    assert recipes["outpainting"].width_range == (0.2, 0.3)
    assert recipes["removal"].needs == RecipeNeeds(
        partner=True, instance="partner", recheck_area=True
    )
    assert recipes["tracking"].needs == RecipeNeeds(all_masks=True, prompt=TRACKING_PROMPT)
    assert recipes["outpainting"].needs.instance is None


def test_override_binds_insertion_to_another_class_and_the_builder_follows_its_needs(
    data, tmp_path
):
    overrides = ("tasks=[insertion]", "recipes.telea_fill=null", f"+recipes.stripes={STRIPES}")
    cfg = job_cfg(data, tmp_path / "out", "num_samples=4", "samples_per_shard=2", *overrides)
    assert run_job(cfg).manifest["samples"] == 4
    samples = read_all(tmp_path / "out")
    assert len(samples) == 4
    for s in samples:
        m = s.meta
        assert (m["task"], m["recipe"], m["prompt"]) == ("insertion", "stripes", "paint stripes")
        instances = m["params"]["instances"]  # all_masks: both instances of the video
        assert len(instances) == 2 and m["object_ids"][0] in instances
        # partner: the plan drew insertion a partner video, another video than A.
        assert m["params"]["partner_video"] != m["video_id"]
        assert "partner_frame_indices" in m["params"]
        assert s.mask[0].any() and not s.mask[:, 1::3].any()  # rows 1, 4, 7... left out
        np.testing.assert_array_equal(s.sce[s.mask.astype(bool)], 0)


def test_yaml_file_in_the_recipes_group_swaps_a_recipe(tmp_path):
    group = tmp_path / "recipes"
    group.mkdir()
    (group / "striped.yaml").write_text(
        f"defaults: [default, _self_]\ntelea_fill: null\nstripes: {STRIPES}\n"
    )
    recipes = real_recipes(f"hydra.searchpath=[file://{tmp_path}]", "recipes=striped")
    assert isinstance(recipes["insertion"], Stripes) and recipes["insertion"].period == 3
    assert isinstance(recipes["edit"], MaskFill) and recipes["edit"].fill == "mean"
    assert isinstance(recipes["removal"], CopyPaste)


BAD_RECIPES = [
    ("recipes.copy_paste.scale_range=[2,1]", r"recipes\.copy_paste\.scale_range: expected 0 <"),
    ("recipes.copy_paste.synthetic_effects=1.5", r"recipes\.copy_paste\.synthetic_effects: "),
    ("recipes.color_fill.primary=mauve", r"recipes\.color_fill\.primary: unknown colour 'mauve'"),
    ("recipes.color_fill.palette=[]", r"recipes\.color_fill\.palette: expected at least one"),
    ("recipes.mean_fill.grow=-1", r"recipes\.mean_fill\.grow: expected an integer >= 0"),
    ("recipes.mean_fill.task=removal", r"recipes\.mean_fill\.task: expected one of"),
    ("recipes.border_fill.max_sides=9", r"recipes\.border_fill\.max_sides: expected 1\.\.4"),
    ("recipes.telea_fill._target_=nope.Fill", r"recipes\.telea_fill\._target_: cannot import"),
    ("+recipes.copy_paste.foo=1", r"recipes\.copy_paste: TypeError: .*keyword argument 'foo'"),
    ("recipes.telea_fill.task=edit", r"recipes\.telea_fill: task 'edit' is already built by "),
    ("recipes.telea_fill=null", r"recipes: no recipe builds task 'insertion', which the mix"),
    ("recipes.mean_fill=5", r"recipes\.mean_fill: expected a node with a _target_"),
    ("+recipes.x={_target_: builtins.dict}", r"recipes\.x\.task: dict builds None, expected"),
]


@pytest.mark.parametrize(("override", "message"), BAD_RECIPES)
def test_bad_recipe_node_is_one_line_naming_its_key(tmp_path, override, message):
    plain = OmegaConf.to_container(job_cfg(tmp_path, tmp_path / "out", override), resolve=True)
    with pytest.raises(ConfigError, match=f"^{message}") as info:
        check_job_config(plain)
    assert "\n" not in str(info.value)


def test_task_without_recipe_is_fine_when_the_job_never_samples_it(tmp_path):
    cfg = job_cfg(tmp_path, tmp_path / "out", "recipes.telea_fill=null", "tasks=[removal,edit]")
    check_job_config(OmegaConf.to_container(cfg, resolve=True))


def test_run_shards_prints_a_recipe_error_on_one_line(data, tmp_path, capsys):
    cfg = job_cfg(data, tmp_path / "out", "recipes.copy_paste.scale_range=[2,1]")
    assert run_shards(cfg) == 2
    err = capsys.readouterr().err
    assert err == (
        "genprop-data: error: recipes.copy_paste.scale_range: expected 0 < lo <= hi, got [2, 1]\n"
    )
    assert not (tmp_path / "out").exists()  # refused before anything is written
