"""The benchmark case-folder layout: written by ``genprop-toyworld benchmark``, read by
``genprop-eval``, the demo report and the validation sweeps (all frames lossless PNG)::

    CASES/index.json              {"version": 1, "cases": [{"id", "task", "dir"}, ...]}
    CASES/<id>/meta.json          {"id", "task", "prompt", "fps", "num_frames", "width", "height",
                                   "world_seed", "video_id", "object_ids", "notes"}
    CASES/<id>/input/%05d.png     the original video the user has (RGB)
    CASES/<id>/first_frame.png    the user's edited first frame (RGB) == gt/00000.png
    CASES/<id>/gt/%05d.png        ground-truth edited video (RGB)
    CASES/<id>/edit_mask/%05d.png    0/255 L: object ∪ shadow ∪ reflection of the edited object
    CASES/<id>/object_mask/%05d.png  0/255 L: the object's visible instance mask only
    CASES/<id>/effect_mask/%05d.png  0/255 L: the object's effects (shadow ∪ reflection);
                                     optional for readers

A method's outputs for the cases: ``OUT/<id>/%05d.png`` (or ``OUT/<id>.mp4``) and, optionally,
its predicted masks in ``OUT/<id>_masks/%05d.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

INDEX = "index.json"
INDEX_VERSION = 1
INDEX_FIELDS = ("id", "task", "dir")  # of each entry of index.json's "cases"


def frame_name(t: int) -> str:
    """The file name of frame ``t`` in every frame and mask folder (``00007.png``)."""
    return f"{t:05d}.png"


@dataclass(frozen=True)
class CaseFolder:
    """The paths of one case folder."""

    dir: Path

    @property
    def meta(self) -> Path:
        return self.dir / "meta.json"

    @property
    def input(self) -> Path:
        return self.dir / "input"

    @property
    def first_frame(self) -> Path:
        return self.dir / "first_frame.png"

    @property
    def gt(self) -> Path:
        return self.dir / "gt"

    @property
    def edit_mask(self) -> Path:
        return self.dir / "edit_mask"

    @property
    def object_mask(self) -> Path:
        return self.dir / "object_mask"

    @property
    def effect_mask(self) -> Path:
        return self.dir / "effect_mask"

    @property
    def frame_folders(self) -> tuple[Path, ...]:
        """Every per-frame folder of a complete case (videos, then masks)."""
        return (self.input, self.gt, self.edit_mask, self.object_mask, self.effect_mask)


def output_masks(out_dir: Path, case_id: str) -> Path:
    """Where a method's predicted masks for case ``case_id`` live in its output folder."""
    return out_dir / f"{case_id}_masks"
