"""COCO-style mask decoding for YouTube-VIS and SA-V annotations (``pycocotools.mask``).

A segmentation in the annotation files comes in one of four forms (see FORMATS.md §1.4, §2.1):

- ``null``: the object is absent on that frame;
- uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}`` (official YouTube-VIS GT);
- compressed RLE ``{"size": [H, W], "counts": "str"}`` (OVIS, SA-V, results files);
- a polygon list ``[[x1, y1, x2, y2, ...], ...]``.

:func:`to_rle` validates one segmentation against the video size and normalises it to a compressed
RLE (or ``None`` when absent). Validation matters for safety, not only for clear messages:
``pycocotools``' C decoder writes ``sum(counts)`` values into an ``H*W`` buffer without a bounds
check, so :func:`to_rle` (at read time) and :func:`decode_rle` check that the runs cover exactly
``H*W`` pixels, and polygons are bounded (finite coordinates near the frame, a bounded outline)
because its polygon rasteriser allocates memory in proportion to the outline's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from datagen.readers.fields import FieldError, as_int, brief, is_number
from datagen.record import BadVideo

RLE = dict[str, Any]


# Polygon limits: vertices may lie at most one frame size outside the frame (COCO polygons
# overshoot the border by a few pixels), and the outline may be at most this many pixels long
# in total. pycocotools rasterises at 5x and allocates two ints per step along the outline, so
# this bounds its memory (~40 MB) whatever the file holds.
MAX_POLYGON_PERIMETER = 1_000_000


class MaskFormatError(ValueError):
    """A segmentation is malformed; the message says what was expected."""


def _rle_size(size: object, height: int, width: int) -> None:
    try:
        if not isinstance(size, list | tuple) or len(size) != 2:
            raise FieldError("not a pair")
        got = [as_int(s, where="RLE 'size'") for s in size]
    except FieldError as e:
        raise MaskFormatError(
            f"expected RLE 'size' = [height, width] integers, got {brief(size)}"
        ) from e
    if got != [height, width]:
        raise MaskFormatError(
            f"RLE size {got} does not match the video size [height, width] = [{height}, {width}]"
        )


def _polygons_to_rle(segm: list, height: int, width: int) -> RLE | None:
    polys = [p for p in segm if p != []]  # an empty polygon list part carries no area
    perimeter = 0.0
    for p in polys:
        if not isinstance(p, list) or len(p) < 6 or len(p) % 2 or not all(map(is_number, p)):
            raise MaskFormatError(
                "expected a polygon [x1, y1, x2, y2, ...] of numbers with at least 3 points, "
                f"got {brief(p)}"
            )
        try:
            xy = np.asarray(p, np.float64).reshape(-1, 2)
        except OverflowError:
            xy = np.full((1, 2), np.inf)
        if not np.isfinite(xy).all():
            raise MaskFormatError("polygon coordinates must be finite numbers (got NaN or inf)")
        x, y = xy[:, 0], xy[:, 1]
        if x.min() < -width or x.max() > 2 * width or y.min() < -height or y.max() > 2 * height:
            raise MaskFormatError(
                f"polygon coordinates must lie within one frame size of the {width}x{height} "
                f"frame (x in [{-width}, {2 * width}], y in [{-height}, {2 * height}]), got x in "
                f"[{x.min():g}, {x.max():g}], y in [{y.min():g}, {y.max():g}]"
            )
        closed = np.concatenate([xy, xy[:1]])
        perimeter += float(np.abs(np.diff(closed, axis=0)).max(axis=1).sum()) + len(xy)
        if perimeter > MAX_POLYGON_PERIMETER:
            raise MaskFormatError(
                f"polygon outline is longer than {MAX_POLYGON_PERIMETER} pixels in total"
            )
    if not polys:
        return None
    return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))


def to_rle(segm: object, height: int, width: int) -> RLE | None:
    """Validate one segmentation and normalise it to a compressed RLE.

    Every number is checked before ``pycocotools`` sees it: RLE runs must be non-negative
    integers covering exactly ``height*width`` pixels (also for string counts), polygon
    coordinates finite and near the frame (see :data:`MAX_POLYGON_PERIMETER`).

    Args:
        segm: the JSON value of one frame's segmentation (``None``, RLE dict or polygon list).
        height, width: the video size; an RLE's ``size`` must equal ``[height, width]``.

    Returns:
        ``{"size": [H, W], "counts": bytes}`` or ``None`` when ``segm`` is ``null``.

    Raises:
        MaskFormatError: wrong type, wrong size, negative or non-integer runs, bad polygon.
    """
    if segm is None:
        return None
    if isinstance(segm, dict):
        if "size" not in segm or "counts" not in segm:
            raise MaskFormatError(
                f"expected an RLE with keys 'size' and 'counts', got keys {brief(sorted(segm))}"
            )
        _rle_size(segm["size"], height, width)
        counts = segm["counts"]
        if isinstance(counts, str):
            if not counts.isascii():
                raise MaskFormatError("expected RLE 'counts' string to be ASCII")
            counts = counts.encode("ascii")
        if isinstance(counts, bytes):
            total = compressed_counts_total(counts, height * width)
            if total != height * width:
                raise MaskFormatError(
                    f"compressed RLE counts do not cover the frame: expected {height * width} "
                    f"pixels (height*width), the runs are malformed or sum to {total}"
                )
            return {"size": [height, width], "counts": counts}
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise MaskFormatError("expected RLE 'counts' to be non-negative integers")
            if sum(counts) != height * width:
                raise MaskFormatError(
                    f"RLE counts sum to {brief(sum(counts))}, expected height*width = "
                    f"{height * width}"
                )
            return mask_utils.frPyObjects(
                {"size": [height, width], "counts": counts}, height, width
            )
        raise MaskFormatError(
            f"expected RLE 'counts' to be a string or a list of ints, got {type(counts).__name__}"
        )
    if isinstance(segm, list):
        return _polygons_to_rle(segm, height, width)
    raise MaskFormatError(
        f"expected null, an RLE dict or a polygon list, got {type(segm).__name__}"
    )


def rle_area(rle: RLE | None) -> int:
    """Number of foreground pixels of a compressed RLE (0 for ``None``); no decoding."""
    return 0 if rle is None else int(mask_utils.area(rle))


def compressed_counts_total(counts: bytes, limit: int) -> int:
    """Sum of the runs of a compressed COCO counts string (vectorised ``rleFrString``).

    Each run is 1-6 characters in ``'0'..'o'`` (5 bits each, 0x20 = "more follows", 0x10 of
    the last = sign); runs from the fourth on are stored as differences to the run two before.

    Returns:
        The total, or -1 when a character is out of range, the string is truncated, a run is
        longer than 6 characters or negative, or the total exceeds ``limit``.
    """
    if not counts:
        return 0
    c = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if c.min() < 0 or c.max() > 63:
        return -1  # not a counts character (C would also stop at a NUL byte)
    more = (c & 0x20) != 0
    if more[-1]:
        return -1  # truncated: a continuation bit with nothing after it
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 6:  # 30 bits: runs are < 2**26 for any frame we accept
        return -1
    shift = 5 * (np.arange(c.size) - np.repeat(starts, lengths))
    x = np.add.reduceat((c & 0x1F) << shift, starts)
    x -= np.where(c[ends] & 0x10, np.int64(1) << (5 * lengths), 0)  # sign extension
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])  # runs[i] = x[i] + runs[i-2] for i >= 3
    runs[2::2] = np.cumsum(x[2::2])
    if runs.min() < 0:
        return -1
    total = int(runs.sum())
    return total if total <= limit else -1


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode a compressed RLE from :func:`to_rle` to an ``(H, W)`` bool mask.

    Raises:
        MaskFormatError: when the runs do not cover exactly ``H*W`` pixels.
    """
    h, w = rle["size"]
    total = compressed_counts_total(rle["counts"], h * w)
    if total != h * w:
        raise MaskFormatError(
            f"compressed RLE counts do not cover the frame: expected {h * w} pixels "
            f"(height*width), the runs are malformed or sum to {total}"
        )
    return mask_utils.decode(rle).astype(bool)


def mask_on_frame(
    rles: Sequence[RLE | None], video_id: str, where: str, i: int
) -> np.ndarray | None:
    """The ``mask_fn`` of RLE-based tracks: ``(H, W)`` bool on annotated frame ``i``, or ``None``
    when the object is absent there (``null`` or empty RLE).

    Raises:
        BadVideo: the stored RLE turns out to be malformed (``where`` names file and field).
    """
    rle = rles[i]
    if rle is None or rle_area(rle) == 0:
        return None
    try:
        return decode_rle(rle)
    except MaskFormatError as e:
        raise BadVideo(video_id, f"{where}, annotated frame {i}: {e}") from e
