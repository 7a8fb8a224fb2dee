"""Scene specification of one toy-world video, sampled deterministically from ``(seed, index)``.

A :class:`SceneSpec` is a small, immutable, JSON-friendly description of a whole clip: the
background (procedural texture seed, colours, camera pan), the light (shadow offset, softness,
strength), an optional reflective floor, and 1-3 :class:`ObjectSpec` movers. Rendering
(:mod:`datagen.toyworld.render`) is a pure function of the spec, so a video is reproducible from
its seed alone and independent of how many other videos are generated.

Coordinates: pixels, x to the right, y down, pixel centres at integer coordinates. Objects move in
screen space; the camera pan moves the background only.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass, replace

import numpy as np

SHAPES = ("disc", "ellipse", "square", "rectangle", "triangle", "diamond", "hexagon", "star")
TEXTURES = ("solid", "stripes", "checker", "gradient")
MOTIONS = ("linear", "bounce", "sine")
# Shapes whose aspect ratio is fixed at 1 (a squashed disc is an "ellipse").
_ROUND_SHAPES = ("disc", "square", "hexagon", "star", "triangle")

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the generator (everything else is sampled per video).

    Attributes:
        width, height: frame size in pixels.
        num_frames: frames per video.
        fps: frame rate written to the metadata.
        reflection_prob: probability that a video has a reflective floor.
        max_objects: each video has 1..max_objects objects.
    """

    width: int = 64
    height: int = 64
    num_frames: int = 24
    fps: float = 6.0
    reflection_prob: float = 0.5
    max_objects: int = 3

    def __post_init__(self) -> None:
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"WorldConfig: size {self.width}x{self.height} must be in 16..4096")
        if not 1 <= self.num_frames <= 10_000:
            raise ValueError(f"WorldConfig.num_frames={self.num_frames}: expected 1..10000")
        if not self.fps > 0:
            raise ValueError(f"WorldConfig.fps={self.fps}: expected > 0")
        if not 0.0 <= self.reflection_prob <= 1.0:
            raise ValueError(f"WorldConfig.reflection_prob={self.reflection_prob}: expected 0..1")
        if not 1 <= self.max_objects <= 8:
            raise ValueError(f"WorldConfig.max_objects={self.max_objects}: expected 1..8")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ObjectSpec:
    """One moving object. ``object_id`` is 1-based within its video.

    Motion: ``linear`` moves by ``velocity`` per frame (may enter or leave the frame), ``bounce``
    does the same but reflects off the frame borders, ``sine`` adds a sinusoidal wobble
    perpendicular to the velocity. ``depth``: larger is nearer (drawn later, occludes).
    """

    object_id: int
    shape: str
    texture: str
    colour: RGB
    colour2: RGB
    texture_freq: float  # stripes / checker cells per unit radius
    texture_angle: float  # radians
    radius: float  # circumradius in pixels
    aspect: float  # height / width of the shape before rotation
    angle0: float  # radians
    spin: float  # radians per frame
    motion: str
    start: tuple[float, float]
    velocity: tuple[float, float]  # pixels per frame
    wobble_amp: float  # pixels (sine motion)
    wobble_period: float  # frames (sine motion)
    depth: int


@dataclass(frozen=True)
class SceneSpec:
    """One video: background, camera pan, light, optional floor and objects."""

    seed: int
    index: int
    width: int
    height: int
    num_frames: int
    background_seed: int
    background_colours: tuple[RGB, RGB, RGB]
    stripe_angle: float
    stripe_period: float  # pixels
    pan_margin: int  # the background texture is the frame grown by this on every side
    pan_velocity: tuple[float, float]  # pixels per frame
    shadow_offset: tuple[float, float]  # in units of the object's radius
    shadow_blur: float  # Gaussian sigma in pixels
    shadow_strength: float  # darkening factor at the shadow's core, 0..1
    floor_y: float | None  # reflection line (a floor below it), None = no reflection
    floor_colour: RGB
    reflectivity: float
    objects: tuple[ObjectSpec, ...]

    @property
    def video_id(self) -> str:
        return video_id_for(self.index)

    def object(self, object_id: int) -> ObjectSpec:
        for obj in self.objects:
            if obj.object_id == object_id:
                return obj
        raise KeyError(f"video {self.video_id}: no object {object_id}")

    def with_object(self, obj: ObjectSpec) -> SceneSpec:
        """The same scene with one object replaced (matched by ``object_id``): recolouring."""
        self.object(obj.object_id)
        objs = tuple(obj if o.object_id == obj.object_id else o for o in self.objects)
        return replace(self, objects=objs)


def video_id_for(index: int) -> str:
    return f"toy_{index:06d}"


def _fold(x: float, lo: float, hi: float) -> float:
    """Reflect ``x`` into ``[lo, hi]`` (a triangle wave): bouncing between two walls."""
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2
    y = (x - lo) % (2 * span)
    return lo + (y if y <= span else 2 * span - y)


def object_pose(obj: ObjectSpec, t: int, width: int, height: int) -> tuple[float, float, float]:
    """Centre ``(x, y)`` and rotation angle of ``obj`` on frame ``t``."""
    x = obj.start[0] + obj.velocity[0] * t
    y = obj.start[1] + obj.velocity[1] * t
    if obj.motion == "bounce":
        x = _fold(x, obj.radius, width - 1 - obj.radius)
        y = _fold(y, obj.radius, height - 1 - obj.radius)
    elif obj.motion == "sine":
        speed = math.hypot(*obj.velocity) or 1.0
        nx, ny = -obj.velocity[1] / speed, obj.velocity[0] / speed
        w = obj.wobble_amp * math.sin(2 * math.pi * t / obj.wobble_period)
        x, y = x + nx * w, y + ny * w
    return x, y, obj.angle0 + obj.spin * t


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def bright_colour(rng: np.random.Generator, hue: float | None = None) -> RGB:
    """A saturated, bright colour: objects must stand out from the muted background."""
    h = rng.random() if hue is None else hue
    return _hsv(h, rng.uniform(0.75, 1.0), rng.uniform(0.88, 1.0))


def _sample_object(
    rng: np.random.Generator, cfg: WorldConfig, object_id: int, depth: int, inside: bool
) -> ObjectSpec:
    side = min(cfg.width, cfg.height)
    shape = str(rng.choice(SHAPES))
    radius = side * rng.uniform(0.13, 0.24)
    aspect = 1.0 if shape in _ROUND_SHAPES else float(rng.uniform(0.5, 0.75))
    motion = str(rng.choice(MOTIONS, p=[0.45, 0.3, 0.25]))
    # Travel over the clip as a fraction of the frame side, so motion scales with size and length.
    travel = side * rng.uniform(0.4, 1.2)
    heading = rng.uniform(0, 2 * math.pi)
    steps = max(cfg.num_frames - 1, 1)
    velocity = (travel * math.cos(heading) / steps, travel * math.sin(heading) / steps)
    if inside or motion == "bounce":
        start = (
            rng.uniform(radius, cfg.width - 1 - radius),
            rng.uniform(radius, cfg.height - 1 - radius),
        )
    else:
        # Anywhere on a grown frame: such objects may start outside and enter, or leave.
        start = (
            rng.uniform(-0.3 * cfg.width, 1.3 * cfg.width),
            rng.uniform(-0.3 * cfg.height, 1.3 * cfg.height),
        )
        # Aim through the frame so that the object is seen at some point.
        aim = (rng.uniform(0.25, 0.75) * cfg.width, rng.uniform(0.25, 0.75) * cfg.height)
        d = math.hypot(aim[0] - start[0], aim[1] - start[1]) or 1.0
        speed = math.hypot(*velocity)
        velocity = ((aim[0] - start[0]) / d * speed, (aim[1] - start[1]) / d * speed)
    hue = rng.random()
    return ObjectSpec(
        object_id=object_id,
        shape=shape,
        texture=str(rng.choice(TEXTURES)),
        colour=bright_colour(rng, hue),
        colour2=bright_colour(rng, hue + rng.uniform(0.3, 0.7)),
        texture_freq=float(rng.uniform(1.0, 1.8)),
        texture_angle=float(rng.uniform(0, math.pi)),
        radius=float(radius),
        aspect=aspect,
        angle0=float(rng.uniform(0, 2 * math.pi)),
        spin=float(rng.uniform(-0.08, 0.08)),
        motion=motion,
        start=(float(start[0]), float(start[1])),
        velocity=(float(velocity[0]), float(velocity[1])),
        wobble_amp=float(side * rng.uniform(0.05, 0.12)),
        wobble_period=float(rng.uniform(8, 16)),
        depth=depth,
    )


def sample_scene(cfg: WorldConfig, seed: int, index: int) -> SceneSpec:
    """The scene of video ``index`` of the world ``seed``; independent of the number of videos."""
    rng = np.random.default_rng([seed, index])
    side = min(cfg.width, cfg.height)
    n_obj = int(rng.integers(1, cfg.max_objects + 1))
    depths = rng.permutation(n_obj)
    # Object 1 starts inside the frame, so every video has something on its first frame.
    objects = tuple(
        _sample_object(rng, cfg, k + 1, int(depths[k]), inside=(k == 0 or rng.random() < 0.5))
        for k in range(n_obj)
    )
    steps = max(cfg.num_frames - 1, 1)
    pan_total = side * rng.uniform(0.15, 0.35) * rng.choice([-1.0, 1.0])
    pan_dy = side * rng.uniform(-0.06, 0.06)
    base_hue = rng.random()
    bg = tuple(
        _hsv(base_hue + rng.uniform(-0.12, 0.12), rng.uniform(0.1, 0.35), rng.uniform(0.3, 0.62))
        for _ in range(3)
    )
    light = rng.uniform(0, 2 * math.pi)
    dist = rng.uniform(0.25, 0.45)
    has_floor = rng.random() < cfg.reflection_prob
    return SceneSpec(
        seed=seed,
        index=index,
        width=cfg.width,
        height=cfg.height,
        num_frames=cfg.num_frames,
        background_seed=int(rng.integers(0, 2**31 - 1)),
        background_colours=bg,  # type: ignore[arg-type]
        stripe_angle=float(rng.uniform(0, math.pi)),
        stripe_period=float(side * rng.uniform(0.2, 0.4)),
        pan_margin=math.ceil(max(abs(pan_total), abs(pan_dy)) / 2) + 2,
        pan_velocity=(float(pan_total / steps), float(pan_dy / steps)),
        shadow_offset=(float(dist * math.cos(light)), float(abs(dist * math.sin(light)) + 0.15)),
        shadow_blur=float(side * rng.uniform(0.015, 0.03)),
        shadow_strength=float(rng.uniform(0.45, 0.65)),
        floor_y=float(cfg.height * rng.uniform(0.6, 0.72)) if has_floor else None,
        floor_colour=_hsv(rng.uniform(0.5, 0.7), rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.5)),
        reflectivity=float(rng.uniform(0.35, 0.55)),
        objects=objects,
    )
