"""The shard format: one WebDataset sample per training pair (the datagen <-> training contract).

Keys of one WebDataset sample (``__key__`` is the sample key):

==============  ===============================================================================
``sce.mp4``     SCE input video, H.264 (yuv420p) through PyAV — or ``sce.npz`` (lossless)
``first.png``   G's first frame, RGB PNG (always lossless)
``target.mp4``  target video, H.264 — or ``target.npz`` (lossless)
``mask.npz``    per-frame masks of the edited region, ``(T, H, W)`` uint8 in {0, 1} (lossless)
``json``        metadata: ``task, recipe, prompt, source, video_id, object_ids, frame_indices, fps,
                seed, schema_version, params`` plus ``encoding`` (codec and geometry)
==============  ===============================================================================

``.npz`` payloads hold one array (``video`` or ``mask``) and are read with ``allow_pickle=False``.
H.264 needs even sizes in yuv420p: odd frames are edge-padded before encoding and cropped back on
decoding (the true size is in ``json["encoding"]``). The encoder runs single-threaded with
bit-exact muxing, so the same sample gives the same bytes on any machine and worker count
(x264's automatic threading slices frames by the number of CPUs, which changes the bitstream),
and without macroblock-tree rate control (see :data:`X264_PARAMS`).
Only stdlib, numpy, PIL and PyAV (and :mod:`contracts.tasks`) are imported here.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
from PIL import Image

from contracts.tasks import TASKS

SCHEMA_VERSION = 1
CODECS = ("h264", "lossless")
META_KEYS = (
    "task",
    "recipe",
    "prompt",
    "source",
    "video_id",
    "object_ids",
    "frame_indices",
    "fps",
    "seed",
    "schema_version",
    "params",
)
# Bounds applied before decoding anything (a shard is untrusted input).
MAX_FRAMES = 4096
MAX_SIDE = 8192
MAX_VOXELS = 1 << 29  # T * H * W of one video: 1.5 GiB as RGB (a 128-frame 1080p clip is 0.27 G)
MAX_JSON_BYTES = 1 << 20
MAX_FPS = 1000.0
DEFAULT_FPS = 24.0
# x264's macroblock-tree rate control reads uninitialised lookahead memory on small frames with
# B-frames (the output then changes from run to run); without it encoding is reproducible.
X264_PARAMS = "mbtree=0"


class SchemaError(ValueError):
    """A sample does not follow the shard schema; the message names the key and the field."""


@dataclass
class Sample:
    """One training pair.

    Attributes:
        key: WebDataset key, unique within a dataset (e.g. ``"s000003_000017"``).
        sce: ``(T, H, W, 3)`` uint8, the video the SCE reads.
        first: ``(H, W, 3)`` uint8, G's first frame.
        target: ``(T, H, W, 3)`` uint8, the video to generate.
        mask: ``(T, H, W)`` uint8 in {0, 1}, the edited region per frame.
        meta: JSON-serialisable metadata with at least the keys in :data:`META_KEYS`.
    """

    key: str
    sce: np.ndarray
    first: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def validate_sample(sample: Sample) -> None:
    """Check shapes, dtypes and metadata; raise :class:`SchemaError` naming the field."""
    where = f"sample {sample.key!r}"
    if not isinstance(sample.key, str) or not sample.key or "." in sample.key:
        raise SchemaError(f"{where}: field 'key' must be a non-empty string without '.'")
    sce = _check_array(sample.sce, 4, where, "sce")
    if sce.shape[-1] != 3:
        raise SchemaError(f"{where}: field 'sce' must be (T, H, W, 3), got {sce.shape}")
    T, H, W = sce.shape[:3]
    if not _within_bounds(T, H, W):
        raise SchemaError(f"{where}: field 'sce' has out-of-bounds shape {sce.shape}")
    for name, arr, shape in (
        ("target", sample.target, (T, H, W, 3)),
        ("first", sample.first, (H, W, 3)),
        ("mask", sample.mask, (T, H, W)),
    ):
        _check_array(arr, len(shape), where, name)
        if arr.shape != shape:
            raise SchemaError(f"{where}: field {name!r} must have shape {shape}, got {arr.shape}")
    if sample.mask.max(initial=0) > 1:
        raise SchemaError(f"{where}: field 'mask' must hold only 0 and 1")
    _check_meta(sample.meta, where, T)


def encode_sample(
    sample: Sample, *, codec: str = "h264", crf: int = 18, preset: str = "medium"
) -> dict[str, bytes | str]:
    """Encode a sample as a WebDataset dict (``__key__`` plus the keys in the module docstring).

    Args:
        sample: the pair to write; validated first.
        codec: ``"h264"`` (compressed videos) or ``"lossless"`` (``.npz`` videos).
        crf: H.264 constant rate factor, 0 (best) .. 51 (worst).
        preset: x264 speed preset (``"ultrafast"`` .. ``"veryslow"``).
    """
    validate_sample(sample)
    if codec not in CODECS:
        raise SchemaError(f"codec must be one of {CODECS}, got {codec!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise SchemaError(f"crf must be an integer in 0..51, got {crf!r}")
    T, H, W = sample.mask.shape
    encoding: dict[str, Any] = {"codec": codec, "frames": T, "height": H, "width": W}
    out: dict[str, bytes | str] = {"__key__": sample.key}
    if codec == "h264":
        encoding["crf"] = int(crf)
        fps = sample.meta.get("fps") or DEFAULT_FPS
        out["sce.mp4"] = _encode_h264(sample.sce, fps=fps, crf=int(crf), preset=preset)
        out["target.mp4"] = _encode_h264(sample.target, fps=fps, crf=int(crf), preset=preset)
    else:
        out["sce.npz"] = _npz(video=sample.sce)
        out["target.npz"] = _npz(video=sample.target)
    out["first.png"] = _png(sample.first)
    out["mask.npz"] = _npz(mask=np.ascontiguousarray(sample.mask, dtype=np.uint8))
    meta = dict(sample.meta, encoding=encoding)
    try:
        out["json"] = json.dumps(meta, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise SchemaError(f"sample {sample.key!r}: field 'meta' is not plain JSON ({e})") from e
    return out


def decode_sample(d: dict[str, Any]) -> Sample:
    """Decode a WebDataset dict written by :func:`encode_sample` into a :class:`Sample`.

    Raises:
        SchemaError: naming the sample key and the missing or malformed field.
    """
    key = d.get("__key__", "?")
    if isinstance(key, bytes):
        key = key.decode()
    where = f"sample {key!r}"
    meta = _load_json(d, where)
    enc = meta.pop("encoding", None)
    if not isinstance(enc, dict) or enc.get("codec") not in CODECS:
        raise SchemaError(f"{where}: key 'json' field 'encoding' must name a codec in {CODECS}")
    T, H, W = (enc.get(k) for k in ("frames", "height", "width"))
    if not all(_is_int(v) for v in (T, H, W)):
        raise SchemaError(
            f"{where}: key 'json' field 'encoding' needs integer frames/height/width, "
            f"got {T!r}/{H!r}/{W!r}"
        )
    if not _within_bounds(T, H, W):
        raise SchemaError(
            f"{where}: key 'json' field 'encoding' size {T}x{H}x{W} out of bounds "
            f"(frames <= {MAX_FRAMES}, sides <= {MAX_SIDE}, frames*height*width <= {MAX_VOXELS})"
        )
    videos = {}
    for name in ("sce", "target"):
        if enc["codec"] == "h264":
            raw = _need(d, f"{name}.mp4", where)
            videos[name] = _decode_h264(raw, T, H, W, f"{where}: key '{name}.mp4'")
        else:
            raw = _need(d, f"{name}.npz", where)
            videos[name] = _load_npz(
                raw, "video", f"{where}: key '{name}.npz'", max_bytes=T * H * W * 3 + 4096
            )
    first = _load_png(_need(d, "first.png", where), f"{where}: key 'first.png'", (H, W))
    mask_raw = _need(d, "mask.npz", where)
    mask = _load_npz(mask_raw, "mask", f"{where}: key 'mask.npz'", max_bytes=T * H * W + 4096)
    sample = Sample(key, videos["sce"], first, videos["target"], mask, meta)
    validate_sample(sample)
    return sample


# ---------------------------------------------------------------------------------------------
def _check_array(arr: Any, ndim: int, where: str, name: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != ndim:
        got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} ndim={getattr(arr, 'ndim', '')}"
        raise SchemaError(f"{where}: field {name!r} must be a {ndim}-d uint8 array, got {got}")
    return arr


def _check_meta(meta: Any, where: str, T: int) -> None:
    if not isinstance(meta, dict):
        raise SchemaError(f"{where}: field 'meta' must be a dict")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise SchemaError(f"{where}: field 'meta' lacks keys {missing}")
    if meta["task"] not in TASKS:
        got = meta["task"]
        raise SchemaError(f"{where}: meta field 'task' must be one of {TASKS}, got {got!r}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: meta field 'schema_version' is {meta['schema_version']!r}, "
            f"this code reads version {SCHEMA_VERSION}"
        )
    if not isinstance(meta["prompt"], str):
        raise SchemaError(f"{where}: meta field 'prompt' must be a string")
    if not isinstance(meta["frame_indices"], list) or len(meta["frame_indices"]) != T:
        raise SchemaError(f"{where}: meta field 'frame_indices' must be a list of {T} ints")
    if not all(_is_int(i) and i >= 0 for i in meta["frame_indices"]):
        raise SchemaError(f"{where}: meta field 'frame_indices' must hold non-negative ints")
    if not isinstance(meta["object_ids"], list) or not isinstance(meta["params"], dict):
        raise SchemaError(f"{where}: meta fields 'object_ids' (list) and 'params' (dict) required")
    fps = meta["fps"]
    if fps is not None and not (
        isinstance(fps, int | float)
        and not isinstance(fps, bool)
        and math.isfinite(fps)
        and 0 < fps <= MAX_FPS
    ):
        raise SchemaError(
            f"{where}: meta field 'fps' must be null or a finite number in (0, {MAX_FPS}], "
            f"got {fps!r}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _within_bounds(T: int, H: int, W: int) -> bool:
    sides = 1 <= H <= MAX_SIDE and 1 <= W <= MAX_SIDE
    return 1 <= T <= MAX_FRAMES and sides and T * H * W <= MAX_VOXELS


def _need(d: dict[str, Any], name: str, where: str) -> bytes:
    raw = d.get(name)
    if not isinstance(raw, bytes | bytearray):
        raise SchemaError(f"{where}: key {name!r} missing or not bytes (keys: {sorted(d)})")
    return bytes(raw)


def _load_json(d: dict[str, Any], where: str) -> dict[str, Any]:
    raw = _need(d, "json", where)
    if len(raw) > MAX_JSON_BYTES:
        raise SchemaError(f"{where}: key 'json' has {len(raw)} bytes, limit {MAX_JSON_BYTES}")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:  # bad syntax or encoding, huge ints, deep nesting
        raise SchemaError(f"{where}: key 'json' is not valid JSON ({type(e).__name__})") from e
    if not isinstance(meta, dict):
        raise SchemaError(f"{where}: key 'json' must hold an object")
    return meta


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _load_npz(raw: bytes, name: str, where: str, *, max_bytes: int) -> np.ndarray:
    """One array of an ``.npz`` (no pickles), refusing to inflate more than ``max_bytes``."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            if name not in z.files:
                raise SchemaError(f"{where}: array {name!r} missing (has {z.files})")
            size = z.zip.getinfo(f"{name}.npy").file_size
            if size > max_bytes:
                raise SchemaError(
                    f"{where}: array {name!r} inflates to {size} bytes, "
                    f"the declared geometry allows {max_bytes}"
                )
            return z[name]
    except SchemaError:
        raise
    except Exception as e:  # zipfile, numpy and EOF errors of a damaged payload
        raise SchemaError(f"{where}: not a readable .npz ({type(e).__name__}: {e})") from e


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode=None).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _load_png(raw: bytes, where: str, size: tuple[int, int]) -> np.ndarray:
    """PNG bytes -> ``(H, W, 3)`` uint8, refusing before decoding any other size than ``size``."""
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if (im.height, im.width) != size:
                raise SchemaError(
                    f"{where}: image is {im.width}x{im.height}, json says {size[1]}x{size[0]}"
                )
            return np.asarray(im.convert("RGB"))
    except SchemaError:
        raise
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError on damaged files
        raise SchemaError(f"{where}: not a readable PNG ({type(e).__name__}: {e})") from e


def _encode_h264(video: np.ndarray, *, fps: float, crf: int, preset: str) -> bytes:
    """``(T, H, W, 3)`` uint8 -> mp4 bytes; odd sizes are edge-padded to even."""
    H, W = video.shape[1:3]
    pad = ((0, 0), (0, H % 2), (0, W % 2), (0, 0))
    if H % 2 or W % 2:
        video = np.pad(video, pad, mode="edge")
    buf = io.BytesIO()
    # fflags=+bitexact: no library version strings in the container; threads=1: see the docstring.
    with av.open(buf, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {
            "crf": str(crf),
            "preset": preset,
            "threads": "1",
            "x264-params": X264_PARAMS,
        }
        for frame in video:
            rgb = av.VideoFrame.from_ndarray(frame, format="rgb24")
            yuv = rgb.reformat(format="yuv420p", threads=1)  # one swscale thread, as for x264
            container.mux(stream.encode(yuv))
        container.mux(stream.encode(None))
    return buf.getvalue()


def _decode_h264(raw: bytes, T: int, H: int, W: int, where: str) -> np.ndarray:
    """mp4 bytes -> ``(T, H, W, 3)`` uint8; decodes at most ``T`` frames."""
    out = np.empty((T, H, W, 3), np.uint8)
    n = 0
    try:
        with av.open(io.BytesIO(raw), mode="r") as container:
            vs = container.streams.video
            if not vs:
                raise SchemaError(f"{where}: no video stream")
            ph, pw = H + H % 2, W + W % 2
            if (vs[0].codec_context.height, vs[0].codec_context.width) != (ph, pw):
                got = f"{vs[0].codec_context.width}x{vs[0].codec_context.height}"
                raise SchemaError(f"{where}: video is {got}, expected {pw}x{ph}")
            for frame in container.decode(vs[0]):
                if n == T:
                    break
                out[n] = frame.to_ndarray(format="rgb24")[:H, :W]
                n += 1
    except SchemaError:
        raise
    except Exception as e:  # av.FFmpegError and friends on a damaged stream
        raise SchemaError(f"{where}: undecodable video ({type(e).__name__}: {e})") from e
    if n != T:
        raise SchemaError(f"{where}: has {n} frames, json says {T}")
    return out
