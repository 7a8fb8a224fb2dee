"""The backbone-family registry: one record per family, the only place a kind is dispatched.

Checks that each registered family is consistent, that the tiny DiT's one parameter formula equals
the built modules, that configs stay cheap to import, and that a new family plugs in through the
registry alone (a stand-in family registered for one test flows through ``from_dict``, the checks,
the estimate and the model build).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from genprop import DiTConfig, GenPropConfig, GenPropModel, preset
from genprop.backbones import build_backbone
from genprop.backbones.dit.family import DIT
from genprop.backbones.dit.model import TinyDiT
from genprop.backbones.registry import FAMILIES, family_of, get_family, kind_choices
from genprop.config_checks import ConfigError, check_config, estimate_parameters
from genprop.configs import CodecConfig, TextConfig


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_each_family_is_registered_under_its_configs_kind(kind: str) -> None:
    family = FAMILIES[kind]
    assert family.kind == kind
    assert family.config().kind == kind  # a default config: every field has a default
    assert family_of(family.config()) is family


def test_an_unknown_kind_lists_the_registered_ones() -> None:
    assert kind_choices() == "'dit' or 'wan'"
    with pytest.raises(ValueError, match=r"config\.backbone\.kind: expected 'dit' or 'wan', got"):
        GenPropConfig.from_dict({"backbone": {"kind": "unet"}})
    with pytest.raises(ValueError, match="expected 'dit' or 'wan'"):
        get_family(None)
    cfg = preset("cpu_test")
    cfg.backbone.kind = "unet"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"'backbone\.kind': expected one of \['dit', 'wan'\]"):
        check_config(cfg)


@pytest.mark.parametrize(
    ("backbone", "mask_channels"),
    [
        (DiTConfig(dim=32, depth=2, heads=2), 1),
        (DiTConfig(dim=48, depth=3, heads=4, patch=1, mlp_ratio=2.5), 1),
        (DiTConfig(dim=32, depth=2, heads=2, text_cross_attention=False), 4),
        (DiTConfig(dim=32, depth=2, heads=2, head_conv=16), 1),
    ],
)
def test_the_dit_parameter_formula_equals_the_built_backbone(
    backbone: DiTConfig, mask_channels: int
) -> None:
    latent_channels, text_dim = 12, 24
    est = DIT.parameters(
        backbone, latent_channels=latent_channels, mask_channels=mask_channels, text_dim=text_dim
    )
    with torch.device("meta"):
        model = TinyDiT(
            backbone,
            latent_channels=latent_channels,
            mask_channels=mask_channels,
            text_dim=text_dim,
        )
    assert est.total == _numel(model)
    assert est.block == _numel(model.blocks[0])
    assert (est.depth, est.width) == (backbone.depth, backbone.dim)


def test_the_budget_counts_the_dit_backbone_exactly() -> None:
    # The config budget and count_parameters share the formula: the backbone is exact, the rest of
    # the estimate (SCE, MPD, table) stays within the tolerance test_config_checks pins.
    cfg = preset("cpu_test")
    with torch.device("meta"):
        model = GenPropModel(cfg)
    est = family_of(cfg.backbone).parameters(
        cfg.backbone, latent_channels=3 * cfg.codec.patch**2, mask_channels=1, text_dim=16
    )
    assert est.total == _numel(model.backbone)
    assert 0.9 * _numel(model) <= estimate_parameters(cfg) <= 1.1 * _numel(model)


def test_configs_import_without_torch_modules_or_diffusers() -> None:
    code = (
        "import sys, genprop.configs, genprop.config_checks, genprop.backbones.registry; "
        "heavy = [m for m in ('diffusers', 'genprop.backbones.wan.backbone', "
        "'genprop.backbones.wan.pipeline_folder') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@dataclasses.dataclass
class _StandInConfig(DiTConfig):
    """A new family's config for the plug-in test: the DiT's fields under another kind."""

    kind: str = "stand_in"  # type: ignore[assignment]


def test_a_family_plugs_in_through_the_registry_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    family = dataclasses.replace(DIT, kind="stand_in", config=_StandInConfig)
    monkeypatch.setitem(FAMILIES, "stand_in", family)
    data = preset("cpu_test").to_dict()
    data["backbone"]["kind"] = "stand_in"
    cfg = GenPropConfig.from_dict(data)
    assert isinstance(cfg.backbone, _StandInConfig) and family_of(cfg.backbone) is family
    assert estimate_parameters(cfg) == estimate_parameters(preset("cpu_test"))
    assert isinstance(build_backbone(cfg, latent_channels=48, mask_channels=1), TinyDiT)
    assert GenPropModel(cfg).boundary_ratio is None
    assert kind_choices() == "'dit', 'wan' or 'stand_in'"
    with pytest.raises(ValueError, match="this family has no pretrained folders"):
        GenPropConfig.from_folder("anywhere", kind="stand_in")


def test_wan_counts_its_experts_from_its_transformer_configs() -> None:
    wan = GenPropConfig(
        backbone=FAMILIES["wan"].config(transformer_config={"num_layers": 2}),
        codec=CodecConfig(kind="wan_vae"),
        text=TextConfig(dim=4096),
        sce_blocks=2,
    )
    family = family_of(wan.backbone)
    assert family.experts(wan.backbone) == 1 and family.boundary_ratio(wan.backbone) is None
    wan.backbone.transformer_2_config = {"num_layers": 2}
    wan.backbone.boundary_ratio = 0.9
    assert family.experts(wan.backbone) == 2 and family.boundary_ratio(wan.backbone) == 0.9
    assert family.pretrained_path(wan.backbone) is None
    check_config(wan)
