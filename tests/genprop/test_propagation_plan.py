"""genprop.scale.propagation_plan: the memory of ``genprop-propagate``, planned on meta."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from genprop import preset
from genprop.backbones.wan.folder import wan_config
from genprop.configs import GenPropConfig
from genprop.inference.placement import _components, _experts
from genprop.modeling.model import GenPropModel
from genprop.modeling.precision import cast_model
from genprop.scale.meta_model import build_meta_model
from genprop.scale.propagation_plan import plan_propagation


def _bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _real_weights(config: GenPropConfig, dtype: torch.dtype) -> tuple[int, int]:
    """(all, model-offload resident) bytes of the real model cast as ``--dtype`` casts it,
    counted from placement's own component split."""
    model = cast_model(GenPropModel(config, load_weights=False), dtype)
    groups = [*_components(model), *_experts(model)]
    held = {id(t) for g in groups for t in [*g.parameters(), *g.buffers()]}
    rest = sum(
        t.numel() * t.element_size()
        for t in [*model.parameters(), *model.buffers()]
        if id(t) not in held
    )
    return _bytes(model), rest + max(_bytes(g) for g in groups[-model.num_experts :])


def _plan(config: GenPropConfig, **kwargs):
    return plan_propagation(build_meta_model(config), text=config.text, **kwargs)


@pytest.mark.parametrize("variant", ["wan2.1-i2v", "wan2.2-a14b"])
def test_weights_are_the_real_models_bytes_by_mode(
    tiny_wan_folder: Callable[[str], Path], variant: str
) -> None:
    config = wan_config(tiny_wan_folder(variant), num_frames=9, height=64, width=64)
    gb = {}
    for dtype in ("bf16", "fp32"):
        for offload in ("none", "model", "sequential"):
            gb[dtype, offload] = _plan(config, dtype=dtype, offload=offload).memory_gb["weights"]
        every, model = _real_weights(
            config, getattr(torch, {"bf16": "bfloat16"}.get(dtype, "float32"))
        )
        assert gb[dtype, "none"] * 1e9 == pytest.approx(every, rel=1e-3)
        assert gb[dtype, "model"] * 1e9 == pytest.approx(model, rel=1e-3)
        assert gb[dtype, "none"] > gb[dtype, "model"] > gb[dtype, "sequential"] > 0
    for offload in ("none", "model", "sequential"):
        assert gb["fp32", offload] > gb["bf16", offload]


def test_activations_are_measured_and_grow_with_frames_and_cfg(
    tiny_wan_folder: Callable[[str], Path],
) -> None:
    folder = tiny_wan_folder("wan2.1-i2v")
    short = _plan(wan_config(folder, num_frames=5, height=64, width=64), guidance=1.0)
    long = _plan(wan_config(folder, num_frames=17, height=64, width=64), guidance=1.0)
    cfg = _plan(wan_config(folder, num_frames=17, height=64, width=64), guidance=5.0)
    for key in ("activations_denoise", "activations_codec"):
        assert 0 < short.memory_gb[key] < long.memory_gb[key]
    assert cfg.memory_gb["activations_denoise"] > long.memory_gb["activations_denoise"]
    assert cfg.gpu_memory_gb > long.gpu_memory_gb > short.gpu_memory_gb
    assert long.gpu_memory_gb == max(long.phases_gb.values())


def test_sequence_parallelism_divides_the_denoising_activations(
    tiny_wan_folder: Callable[[str], Path],
) -> None:
    config = wan_config(tiny_wan_folder("wan2.1-i2v"), num_frames=17, height=64, width=64)
    one, two = (_plan(config, sequence_parallel=n) for n in (1, 2))
    assert two.memory_gb["activations_denoise"] < one.memory_gb["activations_denoise"]
    assert two.memory_gb["weights"] == one.memory_gb["weights"]  # every rank holds the model
    assert two.to_json()["sequence_parallel"] == 2


def test_cpu_test_preset_and_bad_options() -> None:
    plan = _plan(preset("cpu_test"), offload="model")
    record = plan.to_json()
    assert record["fits"] is True and record["offload"] == "model" and record["gpu_memory_gb"] > 0
    with pytest.raises(ValueError, match="offload"):
        _plan(preset("cpu_test"), offload="disk")
    with pytest.raises(ValueError, match="dtype"):
        _plan(preset("cpu_test"), dtype="fp16")
