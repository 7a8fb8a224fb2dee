"""The planner (genprop.scale.memory_plan on the meta device) against real CPU training steps.

FLOPs are compared with ``torch.utils.flop_counter.FlopCounterMode`` on the real step, with the math
SDPA backend (CPU's fused attention op has no FLOP formula; the math path's matmuls are counted).
The planner counts fused attention (``aten._scaled_dot_product_efficient_attention``), whose
backward recomputes the scores: one matmul more than the math path's backward, so it is a few
percent above on these small models.

Memory is measured where the CPU allocator reports it: ``torch.profiler`` with
``profile_memory=True`` records every allocation and free (its ``[memory]`` events); their running
sum over the step, above what was allocated before it (weights, gradients, optimizer states, EMA,
batch, summed exactly), is the step's real peak. The planner's numbers are fp32 here
(``precision="32-true"``), as the CPU step is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from genprop.backbones.wan.folder import wan_config
from genprop.backbones.wan.tiny import write_tiny_wan_pipeline
from genprop.configs import GenPropConfig, preset
from genprop.losses import training_losses
from genprop.modeling.model import GenPropModel
from genprop.region_aware_loss import LossWeights
from genprop.scale.memory_plan import (
    ClusterSpec,
    StepSpec,
    TrainingPlan,
    plan_training,
    static_memory,
)
from genprop.scale.meta_model import build_meta_model, build_random_model
from genprop.scale.meta_step import meta_batch
from genprop.video_batch import VideoBatch

TOLERANCE = 0.2


def _trainable(model: GenPropModel) -> list[torch.nn.Parameter]:
    model.requires_grad_(False)
    params = model.trainable_parameters("genprop")
    for p in params:
        p.requires_grad_(True)
    return params


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _profiled_peak(fn: Callable[[], None]) -> tuple[int, int]:
    """(peak, end) of the bytes allocated by ``fn`` and not yet freed, from the profiler."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, live


def _plan(config: GenPropConfig, weights: LossWeights, checkpointing: bool) -> TrainingPlan:
    meta = build_meta_model(config)
    _trainable(meta.model)
    cluster = ClusterSpec(precision="32-true")
    step = StepSpec(weights=weights, checkpointing=checkpointing)
    return plan_training(meta, cluster=cluster, step=step)


class RealStep:
    """The same model as the plan (random weights, CPU, fp32) and its training step."""

    def __init__(self, config: GenPropConfig, weights: LossWeights, checkpointing: bool) -> None:
        torch.manual_seed(0)
        self.model = build_random_model(config, "cpu")
        for m in self.model.modules():
            if hasattr(m, "gradient_checkpointing"):
                m.gradient_checkpointing = checkpointing
        self.params = _trainable(self.model)
        self.weights = weights
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4)
        self.ema = [p.detach().float().clone() for p in self.params]
        gen = torch.Generator().manual_seed(0)
        self.batch = VideoBatch(
            **{
                k: torch.zeros_like(v)
                if v.dtype == torch.long
                else torch.rand(v.shape, generator=gen)
                for k, v in meta_batch(self.model, 1, "cpu").tensors().items()
            }
        )

    def loss(self) -> torch.Tensor:
        return training_losses(
            self.model,
            self.batch,
            stage="genprop",
            weights=self.weights,
            generator=torch.Generator(),
        )["total"]

    def step(self) -> None:
        """As Lightning orders it: forward, zero_grad (set_to_none), backward, optimizer step."""
        loss = self.loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def allocated_before(self) -> int:
        states = [s for st in self.optimizer.state.values() for s in st.values()]
        grads = [p.grad for p in self.params]
        tensors = [*self.model.parameters(), *self.model.buffers(), *self.ema]
        return (
            _nbytes(tensors)
            + _nbytes(grads)
            + _nbytes([s for s in states if torch.is_tensor(s)])
            + _nbytes(self.batch.tensors().values())
        )

    def flops(self) -> int:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            self.loss().backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


CASES = [(False, 1.0), (True, 1.0), (True, 0.0)]


@pytest.mark.parametrize(("checkpointing", "beta"), CASES)
def test_plan_matches_a_real_cpu_step(checkpointing: bool, beta: float) -> None:
    config, weights = preset("cpu_test"), LossWeights(grad=beta)
    plan = _plan(config, weights, checkpointing)
    real = RealStep(config, weights, checkpointing)
    suffix = "checkpointing" if checkpointing else "no_checkpointing"
    hardware = ("encoders", "forward", "recompute", "backward")
    assert (plan.flops["recompute"] > 0) == checkpointing
    assert plan.flops["model"] == plan.flops["forward"] + plan.flops["backward"]
    planned_flops = sum(plan.flops[k] for k in hardware)
    assert planned_flops == pytest.approx(real.flops(), rel=TOLERANCE)

    real.step()  # optimizer states and gradients exist from here on, as in training
    before = real.allocated_before()
    peak, _ = _profiled_peak(real.step)
    assert plan.gpu_memory_gb * 1e9 == pytest.approx(before + peak, rel=TOLERANCE)

    # Activations alone: gradients freed as they arrive, as the planner counts them.
    hooks = [
        p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
        for p in real.params
    ]
    real.optimizer.zero_grad(set_to_none=True)
    activations, _ = _profiled_peak(lambda: real.loss().backward())
    for h in hooks:
        h.remove()
    assert plan.memory_gb[f"activations_{suffix}"] * 1e9 == pytest.approx(
        activations, rel=TOLERANCE
    )


def test_plan_of_a_tiny_wan_matches_a_real_step(tmp_path) -> None:
    """Two experts, Wan VAE: FLOPs and the activations kept for backward (at these tiny widths the
    peak is the CPU VAE's convolution workspace, which differs from cuDNN's and is not planned)."""
    config = wan_config(
        write_tiny_wan_pipeline(tmp_path / "wan"), num_frames=9, height=64, width=64
    )
    weights = LossWeights()
    plan = _plan(config, weights, checkpointing=True)
    real = RealStep(config, weights, checkpointing=True)
    planned_flops = sum(plan.flops[k] for k in ("encoders", "forward", "recompute", "backward"))
    assert planned_flops == pytest.approx(real.flops(), rel=TOLERANCE)
    _, saved = _profiled_peak(lambda: setattr(real, "pending", real.loss()))
    assert plan.memory_gb["activations_saved_checkpointing"] * 1e9 == pytest.approx(
        saved, rel=TOLERANCE
    )


def test_static_memory_shards_under_fsdp_and_replicates_under_ddp() -> None:
    counts = dict(frozen=10**9, trainable=5 * 10**8, encoders=10**8, unit=10**7)
    fsdp = static_memory(**counts, cluster=ClusterSpec(strategy="fsdp", world_size=8))
    ddp = static_memory(**counts, cluster=ClusterSpec(strategy="ddp", world_size=8))
    assert fsdp["weights_frozen"] == pytest.approx(2 * 10**9 / 8 / 1e9)  # bf16, sharded
    assert fsdp["optimizer"] == pytest.approx(8 * 5 * 10**8 / 8 / 1e9)
    assert fsdp["encoders"] == pytest.approx(0.2) and fsdp["ddp_buckets"] == 0
    assert fsdp["fsdp_gathered_units"] == pytest.approx(6 * 10**7 / 1e9)
    assert ddp["weights_frozen"] == pytest.approx(4.0)  # fp32 weights under bf16-mixed
    assert ddp["ddp_buckets"] == pytest.approx(2.0) and ddp["fsdp_gathered_units"] == 0
    true_bf16 = static_memory(**counts, cluster=ClusterSpec(precision="bf16-true"))
    assert true_bf16["weights_frozen"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("field", "value"), [("strategy", "zero3"), ("world_size", 0), ("gpu_memory_gb", -1.0)]
)
def test_cluster_spec_names_a_bad_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ClusterSpec(**{field: value})


def test_plan_says_when_a_step_does_not_fit() -> None:
    config = preset("cpu_test")
    meta = build_meta_model(config)
    _trainable(meta.model)
    plan = plan_training(meta, cluster=ClusterSpec(gpu_memory_gb=1e-4), step=StepSpec())
    record = plan.to_json()
    assert not record["fits"] and record["gpu_capacity_gb"] == 1e-4
    assert record["trainable_params"] == sum(
        p.numel() for p in build_random_model(config, "cpu").trainable_parameters("genprop")
    )
    assert record["tokens"] == 4 * 4 * 4  # 4 frames of 8x8 latents in 2x2 patches


@pytest.mark.slow
def test_full_depth_wan21_i2v_14b_plans_from_a_config_only_folder(tmp_path) -> None:
    """The published Wan2.1-I2V-14B-480P configs alone (no weights) plan a sharded step."""
    from diffusers import WanTransformer3DModel

    from contracts.jsonfile import read_json_object
    from genprop.scale.meta_model import write_config_folder

    source = Path(__file__).parent / "wan_configs" / "wan2.1-i2v-14b-480p.json"
    configs = read_json_object(source, what="published configs")
    config = wan_config(write_config_folder(configs, tmp_path / "wan"), num_frames=33)
    config.backbone.gradient_checkpointing = True
    meta = build_meta_model(config)
    _trainable(meta.model)
    cluster = ClusterSpec(strategy="fsdp", world_size=8)
    step = StepSpec(checkpointing=True, compare_without_checkpointing=False)
    plan = plan_training(meta, cluster=cluster, step=step)
    with torch.device("meta"):
        published = WanTransformer3DModel.from_config(configs["transformer"])
    assert plan.backbone_params == sum(p.numel() for p in published.parameters())
    assert plan.tokens == 9 * 30 * 52  # 33 frames -> 9 latent frames of 60x104 in 2x2 patches
    assert meta.text_encoder_params > 5e9 and meta.image_encoder_params > 6e8  # UMT5-XXL, ViT-H
    assert plan.memory_gb["weights_frozen"] == pytest.approx(2 * plan.frozen_params / 8 / 1e9)
    assert 0 < plan.memory_gb["activations_checkpointing"] < plan.gpu_memory_gb
