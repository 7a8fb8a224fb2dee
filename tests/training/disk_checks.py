"""Checks shared by the disk tests: sizes of what a run wrote against ``genprop-plan``'s figures,
and exports compared tensor by tensor.

Size tolerance: 3 % of the planned size + 16 KB. The planner's per-record overheads
(:mod:`genprop.scale.disk_plan`) were measured on these tiny runs and land within 0.1 %; the
slack is for other torch / safetensors versions. Leaving out the EMA or the AdamW states, or
storing an export in the wrong dtype, moves a tiny run's sizes by 12-40 %.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from genprop.scale.disk_plan import GB

REL, ABS = 0.03, 16_000


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def assert_size(measured: int, planned_gb: float) -> None:
    planned = planned_gb * GB
    assert abs(measured - planned) <= REL * planned + ABS, (measured, planned)


def assert_same_tensors(a: Path, b: Path) -> None:
    """Two exports hold the same tensors, dtypes included."""
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert x.keys() == y.keys()
    for name, tensor in x.items():
        assert tensor.dtype == y[name].dtype and torch.equal(tensor, y[name]), name
