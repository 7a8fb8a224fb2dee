"""The built-in procedural toy world: a default dataset and a benchmark with exact ground truth.

Videos of textured, moving shapes over a panned background; every object casts a shadow and,
on scenes with a floor, a reflection — effects that are not part of its instance mask, as in real
video instance-segmentation data. ``world`` samples a scene from ``(seed, index)``, ``render``
draws it with per-object clean plates, ``writer`` writes a YouTube-VIS dataset plus
``ground_truth`` archives, ``benchmark`` writes evaluation cases, ``preview`` draws a picture,
``cli`` is the ``genprop-toyworld`` command.
"""

from .benchmark import CASE_ORDER, build_case, write_benchmark
from .ground_truth import GroundTruth, load_ground_truth, save_ground_truth
from .render import RenderedVideo, render_video
from .world import SHAPES, TEXTURES, ObjectSpec, SceneSpec, WorldConfig, sample_scene
from .writer import write_dataset

__all__ = [
    "CASE_ORDER",
    "SHAPES",
    "TEXTURES",
    "GroundTruth",
    "ObjectSpec",
    "RenderedVideo",
    "SceneSpec",
    "WorldConfig",
    "build_case",
    "load_ground_truth",
    "render_video",
    "sample_scene",
    "save_ground_truth",
    "write_benchmark",
    "write_dataset",
]
