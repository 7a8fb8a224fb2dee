"""Job configs and timed job runs shared by the data benchmark's parts.

:mod:`benchmarks.data.run` (the in-process measurements) and :mod:`benchmarks.data.ray_scaling`
(the Ray ones) both build their jobs from the real ``genprop_data`` config and time them here.
A job can also run in a fresh interpreter (:func:`in_fresh_process`), so that the peak RSS read
there is the job's alone.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The repository root: ``conf/datagen/`` holds the real ``genprop_data`` config.
REPO = Path(__file__).resolve().parents[2]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Linux: ``VmHWM`` from ``/proc/self/status``, because ``ru_maxrss`` survives ``exec`` and a
    fresh child would report its parent's peak; elsewhere ``resource.getrusage``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # ru_maxrss: bytes on macOS, else KiB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


def base_config(source: dict[str, Any], *, frames: int, size: tuple[int, int]) -> dict[str, Any]:
    """The real ``genprop_data`` config (Hydra defaults) as a plain dict, for ``source``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf" / "datagen"), version_base="1.3"):
        cfg = compose("genprop_data", [f"source={source['name']}"])
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    plain["source"] = dict(source)
    plain["clip"].update(frames=frames, size=[int(size[0]), int(size[1])])
    plain["progress"] = False
    return plain


def job(base: dict[str, Any], out: Path, **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` writing to ``out`` with top-level keys / ``ray`` / ``encode`` changed."""
    cfg = json.loads(json.dumps(base))
    cfg["output_dir"] = str(out)
    for key, value in changes.items():
        if key in ("ray", "encode"):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def timed_job(cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Run ``run_job(cfg)``; returns ``(wall seconds, manifest)``."""
    from datagen.runner import run_job

    t0 = time.perf_counter()
    manifest = run_job(cfg).manifest
    return time.perf_counter() - t0, manifest


def summarise(seconds: list[float], samples: list[int]) -> dict[str, Any]:
    """Median samples/s over repetitions (and each repetition's)."""
    rates = [n / s for n, s in zip(samples, seconds, strict=True)]
    return {
        "samples_per_s": round(statistics.median(rates), 3),
        "reps_samples_per_s": [round(r, 3) for r in rates],
        "s_per_sample": round(1 / statistics.median(rates), 5),
        "samples_per_job": samples[0],
    }


def child_main() -> None:
    """Child process entry: run the jobs given as JSON on stdin in-process, print JSON results.

    The peak RSS (VmHWM) is read after the imports and after each job: a peak that does not grow
    from the N-sample jobs to a following 3N-sample job shows that the pipeline streams.
    """
    cfgs = json.loads(sys.stdin.read())
    result: dict[str, Any] = {"peak_rss_after_imports_mb": peak_rss_mb()}
    for key in ("seconds", "cpu_s", "samples", "bytes", "peak_rss_mb"):
        result[key] = []
    for cfg in cfgs:
        cpu0 = os.times()
        seconds, manifest = timed_job(cfg)
        cpu1 = os.times()
        result["seconds"].append(seconds)
        result["cpu_s"].append(cpu1.user - cpu0.user + cpu1.system - cpu0.system)
        result["samples"].append(manifest["samples"])
        result["bytes"].append(sum(sh["bytes"] for sh in manifest["shards"]))
        result["peak_rss_mb"].append(peak_rss_mb())
    print(json.dumps(result))


def in_fresh_process(cfgs: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the jobs in-process in a fresh interpreter (so that its peak RSS is theirs alone).

    The repository root goes first on the child's ``PYTHONPATH``: ``benchmarks`` is not an
    installed package, and the child may start in any working directory.
    """
    code = "from benchmarks.data.jobs import child_main; child_main()"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(cfgs),
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child process failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
