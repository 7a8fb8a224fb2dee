"""The placement paths ``test_propagate_placement.py`` does not cover: a Wan2.2-A14B export (two
experts) in bf16 under ``offload="model"`` and ``"sequential"`` and on two sequence-parallel gloo
ranks, and ``genprop-propagate`` under ``torchrun`` with ``--sequence-parallel 2`` (gloo on CPU).
Tolerances as in that file: offloading runs the same kernels on the same device (identical video,
masks within 1e-5); two ranks against one process reorder fp32 sums only (mean |difference|
within 0.5 of 255 levels).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from genprop_helpers import perturb
from propagate_workers import clip

from genprop import GenPropModel, propagate
from genprop.backbones.wan.folder import wan_config
from genprop.cli.propagate import main
from genprop.inference.placement import place_model
from genprop.inference.video_io import read_video, write_frames_dir

GEOMETRY = dict(num_frames=9, height=48, width=48, text_max_tokens=512, sce_blocks=2)


@pytest.fixture(scope="module")
def a14b_export(tiny_wan_folder: Callable[[str], Path], tmp_path_factory) -> tuple[Path, Path]:
    """(export folder, Wan pipeline folder) of a seeded tiny Wan2.2-A14B GenProp model."""
    folder = tiny_wan_folder("wan2.2-a14b")
    torch.manual_seed(0)
    model = GenPropModel.from_config(wan_config(folder, **GEOMETRY))
    for i, part in enumerate((model.content_encoder, model.expert_2.content_encoder)):
        perturb(part, seed=2 + i, scale=0.02)  # non-zero injections in both experts
    out = tmp_path_factory.mktemp("a14b_export") / "model"
    model.save_pretrained(out)
    return out, folder


def _a14b(export: tuple[Path, Path], **options) -> tuple:
    model = GenPropModel.from_pretrained(export[0], allowed_roots=[export[1]], dtype=torch.bfloat16)
    model.eval()
    loads: list[int] = []
    if options.get("offload") == "model":
        # Install the hooks first (propagate reuses them) to watch the experts' hooks run: on the
        # CPU the execution device is the CPU, so each load is a no-op move, but the calls and
        # the chain (which component each load offloads) are those a GPU run makes.
        assert getattr(model, "_genprop_offload", None) is None
        place_model(model, dtype="bf16", offload="model", device="cpu")
        offload = model._genprop_offload
        experts = offload.hooks[-model.num_experts :]
        for index, hook in enumerate(experts):
            run = hook.hook.pre_forward

            def spy(module, *args, _run=run, _index=index, **kwargs):
                loads.append(_index)
                return _run(module, *args, **kwargs)

            hook.hook.pre_forward = spy
    video, first = clip()
    result = propagate(model, video, first, "removal", prompt="x", steps=2, guidance=2.0,
                       dtype="bf16", device="cpu", **options)  # fmt: skip
    return result, model, loads


def test_a14b_bf16_model_offload_equals_no_offload(a14b_export) -> None:
    reference, _, _ = _a14b(a14b_export, offload="none")
    result, model, loads = _a14b(a14b_export, offload="model")
    np.testing.assert_array_equal(result.video, reference.video)
    np.testing.assert_allclose(result.masks, reference.masks, atol=1e-5)
    assert model.num_experts == 2
    hooks = model._genprop_offload.hooks
    high, low = hooks[-2], hooks[-1]
    # Each expert (backbone + SCE + MPD) is one accelerate-offloaded group ...
    for hook, backbone in ((high, model.backbone), (low, model.expert_2.backbone)):
        assert hasattr(hook.model, "_hf_hook") and any(m is backbone for m in hook.model)
    # ... loaded one at a time: the low-noise expert's load offloads the high-noise one, and the
    # next chunk's first encode (the VAE, first in the chain) offloads the low-noise one.
    assert low.hook.prev_module_hook is high
    assert hooks[0].hook.prev_module_hook is low
    # Two chunks x 2 steps with guidance: every step routes through its expert's hook, the high-
    # noise expert first in each chunk (shift 3: t = 1, then below the 0.9 boundary).
    assert loads and set(loads) == {0, 1}
    assert loads == sorted(loads[: len(loads) // 2]) * 2
    assert all(p.device.type == "cpu" for p in model.parameters())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_under_torchrun_two_ranks_writes_the_one_process_video(
    tiny_wan_folder: Callable[[str], Path], tmp_path: Path
) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        torchrun = Path(shutil.which("torchrun") or "torchrun")
    folder = tiny_wan_folder("wan2.1-i2v")
    torch.manual_seed(0)
    model = GenPropModel.from_config(wan_config(folder, **GEOMETRY))
    perturb(model.content_encoder, seed=2, scale=0.02)
    model.save_pretrained(tmp_path / "model")
    video, first = clip()
    write_frames_dir(tmp_path / "frames", video)
    from PIL import Image

    Image.fromarray(first).save(tmp_path / "edit.png")
    argv = ["--model", str(tmp_path / "model"), "--allow-path", str(folder), "--video",
            str(tmp_path / "frames"), "--first-frame", str(tmp_path / "edit.png"), "--task",
            "removal", "--prompt", "x", "--steps", "2", "--guidance", "2"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "genprop.cli.propagate", *argv,
           "--out", str(tmp_path / "two"), "--sequence-parallel", "2"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone writes
    one, two = read_video(tmp_path / "one").frames, read_video(tmp_path / "two").frames
    assert two.shape == one.shape
    diff = np.abs(two.astype(np.int16) - one.astype(np.int16))
    assert diff.mean() <= 0.5, diff.mean()


def test_a14b_bf16_sequential_offload_equals_no_offload(a14b_export) -> None:
    reference, _, _ = _a14b(a14b_export, offload="none")
    result, model, _ = _a14b(a14b_export, offload="sequential")
    np.testing.assert_array_equal(result.video, reference.video)
    np.testing.assert_allclose(result.masks, reference.masks, atol=1e-5)
    # accelerate's layer-by-layer hooks sit on both experts' blocks
    for backbone in (model.backbone, model.expert_2.backbone):
        assert all(hasattr(block, "_hf_hook") for block in backbone.blocks)


def test_a14b_two_gloo_ranks_propagate_the_one_process_video(a14b_export, tmp_path: Path) -> None:
    import torch.multiprocessing as mp
    from propagate_workers import propagate_rank

    export, folder = a14b_export
    model = GenPropModel.from_pretrained(export, allowed_roots=[folder]).eval()
    video, first = clip()
    reference = propagate(model, video, first, "removal", prompt="x", steps=2, guidance=2.0)
    args = (2, _free_port(), str(export), str(folder), str(tmp_path))
    mp.start_processes(propagate_rank, args=args, nprocs=2, start_method="spawn")
    for rank in range(2):  # both experts run (shift 3: the first step above the boundary)
        got = np.load(tmp_path / f"rank_{rank}.npz")
        diff = np.abs(got["video"].astype(np.int16) - reference.video.astype(np.int16))
        assert diff.mean() <= 0.5, (rank, diff.mean())
        np.testing.assert_allclose(got["masks"], reference.masks, atol=1e-3)
