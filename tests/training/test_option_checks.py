"""Options, folders, data geometry and resumed checkpoints are checked up front: one line naming
what is wrong and exit code 2, never a traceback or a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from shard_factory import tiny_overrides, write_shards

from training.config_checks import SetupError, check_writable
from training.plan import main as plan_main
from training.shard_stream import ShardStream
from training.train import _hydra_entry, train


def _one_line_exit_2(cfg, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        _hydra_entry(cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genprop-train: error: "), err
    return err[0].removeprefix("genprop-train: error: ")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=0", "data.batch_size: expected an integer >= 1"),
        ("data.batch_size=-3", "data.batch_size: expected an integer >= 1"),
        ("data.num_workers=-1", "data.num_workers: expected an integer >= 0"),
        ("model.optimizer.lr=-1e-4", "model.optimizer.lr: expected a finite number > 0"),
        ("model.optimizer.lr=nan", "model.optimizer.lr: expected a finite number > 0, got nan"),
        ("model.optimizer.lr=inf", "model.optimizer.lr: expected a finite number > 0, got inf"),
        ("trainer.max_steps=0", "trainer.max_steps: expected an integer >= 1"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val: expected a finite number"),
        ("model.scheduler.warmup_steps=-5", "model.scheduler.warmup_steps: expected an integer"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches: expected"),
        ("model.max_consecutive_nonfinite=0", "model.max_consecutive_nonfinite: expected"),
        ("data.batch_size=two", "data.batch_size: expected an integer >= 1 (samples per batch"),
    ],
)
def test_bad_numeric_option_is_one_line_exit_2(
    override: str, expected: str, shard_dir: Path, tmp_path: Path, compose_cfg, capsys
) -> None:
    cfg = compose_cfg([*tiny_overrides(shard_dir, tmp_path / "run"), override])
    assert _one_line_exit_2(cfg, capsys).startswith(expected)


@pytest.mark.slow  # a fresh process (~5 s); the in-process test above checks the same message
def test_genprop_train_batch_size_0_exits_at_once(shard_dir: Path, tmp_path: Path) -> None:
    """The real console script: it used to hang forever in the loader."""
    overrides = [*tiny_overrides(shard_dir, tmp_path / "run"), "data.batch_size=0"]
    exe = Path(sys.executable).with_name("genprop-train")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(exe), *overrides], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert err == [
        "genprop-train: error: data.batch_size: expected an integer >= 1 (samples "
        "per batch per rank), got 0"
    ], err


def test_run_folder_that_cannot_be_created_is_one_line(
    shard_dir: Path, tmp_path: Path, compose_cfg, capsys
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = compose_cfg(tiny_overrides(shard_dir, blocker / "run"))
    message = _one_line_exit_2(cfg, capsys)
    assert message.startswith("paths.run_dir: cannot create ") and "is not a folder" in message


def _check_unprivileged(folder: Path) -> str:
    """:func:`check_writable` on ``folder`` as an unprivileged user (root writes anywhere): its
    error message, or "" when it passed."""
    if os.geteuid() != 0:
        try:
            check_writable(folder, "callbacks.periodic_checkpoint.dirpath")
        except SetupError as err:
            return str(err)
        return ""
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns on fork() with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: drop to "nobody", report through the pipe, never return
        code = 0
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                check_writable(folder, "callbacks.periodic_checkpoint.dirpath")
            except SetupError as err:
                os.write(write, str(err).encode())
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    return message


def test_read_only_checkpoint_folder_is_refused_at_start() -> None:
    root = Path(tempfile.mkdtemp(prefix="genprop-ro-"))  # reachable by an unprivileged user
    try:
        root.chmod(0o755)
        ckpt = root / "checkpoints"
        ckpt.mkdir(mode=0o555)
        ckpt.chmod(0o555)
        message = _check_unprivileged(ckpt)
        assert message.startswith(f"callbacks.periodic_checkpoint.dirpath: {ckpt} is not writable")
        open_dir = root / "open"
        open_dir.mkdir()
        open_dir.chmod(0o777)
        assert _check_unprivileged(open_dir / "new" / "checkpoints") == ""  # creatable: fine
        assert sorted(root.rglob("*")) == [ckpt, open_dir]  # the check leaves nothing behind
    finally:
        (root / "checkpoints").chmod(0o755)
        for p in sorted(root.rglob("*"), reverse=True):
            p.rmdir()
        root.rmdir()


def test_clips_of_another_geometry_are_one_line(tmp_path: Path, compose_cfg, capsys) -> None:
    shards = tmp_path / "shards"
    write_shards(shards / "train", shards=1, per_shard=4, frames=6)  # cpu_test takes 4 frames
    write_shards(shards / "val", shards=1, per_shard=2, prefix="val", frames=6)
    cfg = compose_cfg([*tiny_overrides(shards, tmp_path / "run"), "trainer.max_steps=2"])
    message = _one_line_exit_2(cfg, capsys)
    assert message.startswith("data: clips are (frames, height, width) = (6, 32, 32) but the")


def test_resuming_a_checkpoint_of_another_model_size_is_one_line(
    shard_dir: Path, tmp_path: Path, compose_cfg, capsys
) -> None:
    first = [
        *tiny_overrides(shard_dir, tmp_path / "small"),
        "trainer.max_steps=1",
        "callbacks.periodic_checkpoint.every_n_train_steps=1",
        "trainer.val_check_interval=1",
        "callbacks.export=null",
    ]
    train(compose_cfg(first))
    ckpt = tmp_path / "small" / "checkpoints" / "last.ckpt"
    other = [
        *tiny_overrides(shard_dir, tmp_path / "other"),
        "+model.net.overrides.backbone.dim=48",
        f"resume={ckpt}",
    ]
    message = _one_line_exit_2(compose_cfg(other), capsys)
    assert message.startswith(f"{ckpt}: tensor 'net.")
    assert "in the checkpoint but" in message and "in the model these options build" in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=0", "data.batch_size: expected an integer >= 1"),
        ("cluster.gpu_memory_gb=nan", "cluster.gpu_memory_gb: expected a finite number > 0"),
    ],
)
def test_genprop_plan_bad_numbers_are_one_line(override: str, expected: str, capsys) -> None:
    assert plan_main(["experiment=tiny_cpu", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"genprop-plan: error: {err[0].split('error: ', 1)[1]}"]
    assert err[0].startswith(f"genprop-plan: error: {expected}"), err


@pytest.mark.parametrize("batch_size", [0, -2])
def test_shard_stream_refuses_a_batch_size_below_1(batch_size: int, shard_dir: Path) -> None:
    """Built directly (not through genprop-train), the stream refuses it too: it would read
    forever without completing a batch."""
    urls = [str(p) for p in sorted((shard_dir / "train").glob("*.tar"))]
    with pytest.raises(ValueError, match=r"data\.batch_size: expected an integer >= 1"):
        ShardStream(urls=urls, batch_size=batch_size, resampled=True, epoch_batches=2)
