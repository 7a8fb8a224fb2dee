"""``propagate(dtype=, offload=, sequence_parallel=)`` and the matching ``genprop-propagate``
flags on a tiny random Wan2.1-I2V export (CLIP image tokens; 12 frames = two re-anchored chunks).

Tolerances: fp32 under either offload mode runs the same kernels on the same (CPU) device, so the
video is identical and the masks within 1e-5. bf16 against fp32: a random tiny model amplifies
rounding (observed: mean |difference| 1.8 of 255 levels, max 66 on a few pixels), so the bound is
a mean of 4 levels and masks within 0.02. Two sequence-parallel ranks against one process: the
group reorders fp32 sums only: mean |difference| within 0.5 levels, masks within 1e-3.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from genprop_helpers import one_line_error, perturb
from propagate_workers import clip, propagate_rank

from genprop import GenPropModel, propagate
from genprop.backbones.wan.folder import wan_config
from genprop.cli.propagate import main
from genprop.inference.video_io import read_video, write_frames_dir
from genprop.modeling.precision import fp32_parameter_names as fp32_names

GEOMETRY = dict(num_frames=9, height=48, width=48, text_max_tokens=512, sce_blocks=2)


@pytest.fixture(scope="module")
def export(tiny_wan_folder: Callable[[str], Path], tmp_path_factory) -> tuple[Path, Path]:
    """(export folder, Wan pipeline folder) of a seeded tiny Wan2.1-I2V GenProp model."""
    folder = tiny_wan_folder("wan2.1-i2v")
    torch.manual_seed(0)
    model = GenPropModel.from_config(wan_config(folder, **GEOMETRY))
    perturb(model.content_encoder, seed=2, scale=0.02)
    out = tmp_path_factory.mktemp("export") / "model"
    model.save_pretrained(out)
    return out, folder


def _run(export: tuple[Path, Path], dtype: str = "fp32", **options) -> tuple:
    torch.manual_seed(123)  # nothing may depend on the global seed
    load_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    model = GenPropModel.from_pretrained(export[0], allowed_roots=[export[1]], dtype=load_dtype)
    video, first = clip()
    result = propagate(model.eval(), video, first, "removal", prompt="x", steps=2, guidance=2.0,
                       dtype=dtype, **options)  # fmt: skip
    return result, model


@pytest.fixture(scope="module")
def reference(export):
    return _run(export)[0]


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_fp32_offload_equals_no_offload(export, reference, offload: str) -> None:
    result, model = _run(export, offload=offload, device="cpu")
    np.testing.assert_array_equal(result.video, reference.video)
    np.testing.assert_allclose(result.masks, reference.masks, atol=1e-5)
    # accelerate's hooks are installed: on the VAE either way; per component (model, the
    # experts routed by a pre-hook) or per layer (sequential) elsewhere
    sequential = offload == "sequential"
    assert hasattr(model.codec.vae, "_hf_hook")
    assert hasattr(model.text_encoder, "_hf_hook") != sequential
    assert hasattr(model.text_encoder.encoder.block[0], "_hf_hook") == sequential
    assert hasattr(model.backbone.blocks[0], "_hf_hook") == sequential
    assert bool(model._forward_pre_hooks) == (offload == "model")


@pytest.mark.parametrize("offload", ["none", "model", "sequential"])
def test_bf16_close_to_fp32(export, reference, offload: str) -> None:
    result, model = _run(export, "bf16", offload=offload, device="cpu")
    keep = fp32_names(model)
    assert keep  # Wan keeps its time embedder, modulation tables and norms in fp32
    for name, param in model.named_parameters():
        want = torch.float32 if name in keep or name.startswith("text_encoder.") else None
        if want is None and name.startswith(("backbone.", "content_encoder.", "codec.")):
            assert param.dtype == torch.bfloat16, name
        elif want is not None and name in keep:
            assert param.dtype == torch.float32, name
    diff = np.abs(result.video.astype(np.int16) - reference.video.astype(np.int16))
    assert 0 < diff.mean() <= 4.0  # bf16 changed something, and not much
    np.testing.assert_allclose(result.masks, reference.masks, atol=0.02)


def test_two_sequence_parallel_ranks_equal_one_process(export, reference, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = (2, port, str(export[0]), str(export[1]), str(tmp_path))
    mp.start_processes(propagate_rank, args=args, nprocs=2, start_method="spawn")
    for rank in range(2):
        got = np.load(tmp_path / f"rank_{rank}.npz")
        diff = np.abs(got["video"].astype(np.int16) - reference.video.astype(np.int16))
        assert diff.mean() <= 0.5, (rank, diff.mean())
        np.testing.assert_allclose(got["masks"], reference.masks, atol=1e-3)


def test_bad_values_are_one_line(export) -> None:
    model = GenPropModel.from_pretrained(export[0], allowed_roots=[export[1]])
    video, first = clip()
    for option, match in (
        ({"dtype": "fp16"}, r"^dtype: expected one of fp32, bf16, got 'fp16'$"),
        ({"offload": "disk"}, r"^offload: expected one of none, model, sequential, got 'disk'$"),
        ({"sequence_parallel": 0}, r"^sequence_parallel: expected an integer >= 1, got 0$"),
        ({"sequence_parallel": 2}, r"^sequence_parallel: 2 needs a process group; run under "
                                   r"torchrun --nproc-per-node 2$"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            propagate(model, video, first, "removal", steps=1, **option)


def test_cli_bf16_model_offload_and_errors(export, reference, tmp_path, capsys) -> None:
    video, first = clip()
    write_frames_dir(tmp_path / "frames", video)
    from PIL import Image

    Image.fromarray(first).save(tmp_path / "edit.png")
    argv = ["--model", str(export[0]), "--allow-path", str(export[1]), "--video",
            str(tmp_path / "frames"), "--first-frame", str(tmp_path / "edit.png"), "--task",
            "removal", "--prompt", "x", "--steps", "2", "--guidance", "2"]  # fmt: skip
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--dtype", "bf16", "--offload", "model"]) == 0
    got = read_video(out).frames
    diff = np.abs(got.astype(np.int16) - reference.video.astype(np.int16))
    assert got.shape == reference.video.shape and diff.mean() <= 4.0
    capsys.readouterr()
    err = one_line_error(capsys, main, [*argv, "--out", str(out), "--dtype", "fp16"])
    assert "--dtype" in err
    err = one_line_error(capsys, main, [*argv, "--out", str(out), "--sequence-parallel", "2"])
    assert "torchrun --nproc-per-node 2" in err and "WORLD_SIZE is unset" in err
    err = one_line_error(capsys, main, [*argv, "--out", str(out), "--sequence-parallel", "0"])
    assert "--sequence-parallel must be >= 1" in err
