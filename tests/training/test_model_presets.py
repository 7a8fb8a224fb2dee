"""``model.net.preset_name=NAME`` selects any ``genprop.configs`` preset from the one model config.

Only configs are composed and built (dataclasses, no weights): the large presets would take
gigabytes. The smallest preset is also instantiated through the composed config.
"""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from genprop.configs import PRESETS, preset
from genprop.modeling.model import GenPropModel
from training.model_factory import build_config
from training.train import CONF_DIR

# Every model config is either the preset-selecting one or a pretrained backbone's.
MODEL_CONFIGS = {"genprop", "wan"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_selected_by_name(name: str, compose_cfg) -> None:
    cfg = compose_cfg([f"model.net.preset_name={name}", "data.shards=x"])
    net = cfg.model.net
    assert net.preset_name == name
    assert net.get("pretrained") is None
    built = build_config(preset_name=net.preset_name, overrides=net.overrides)
    assert built.to_dict() == preset(name).to_dict()


def test_default_model_is_the_demo_preset(compose_cfg) -> None:
    assert compose_cfg(["data.shards=x"]).model.net.preset_name == "demo"


def test_experiments_set_their_preset_over_the_default(compose_cfg) -> None:
    tiny = compose_cfg(["experiment=tiny_cpu", "data.shards=x"]).model.net.preset_name
    assert tiny == "cpu_test"
    cfg = compose_cfg(["experiment=demo_genprop", "model.net.preset_name=small", "data.shards=x"])
    assert cfg.model.net.preset_name == "small"  # the command line wins over the experiment
    assert cfg.model.net.overrides.sampling.steps == 16  # the experiment's overrides stay


def test_no_model_config_only_wraps_a_preset() -> None:
    assert {p.stem for p in (CONF_DIR / "model").glob("*.yaml")} == MODEL_CONFIGS


def test_cpu_test_preset_builds_through_the_config(compose_cfg) -> None:
    cfg = compose_cfg(["model.net.preset_name=cpu_test", "data.shards=x"])
    model = instantiate(cfg.model.net)
    assert isinstance(model, GenPropModel)
    assert model.config.to_dict() == preset("cpu_test").to_dict()
