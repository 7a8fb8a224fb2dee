"""COCO-style mask decoding for YouTube-VIS and SA-V annotations (``pycocotools.mask``).

A segmentation in the annotation files comes in one of four forms (see FORMATS.md §1.4, §2.1):

- ``null``: the object is absent on that frame;
- uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}`` (official YouTube-VIS GT);
- compressed RLE ``{"size": [H, W], "counts": "str"}`` (OVIS, SA-V, results files);
- a polygon list ``[[x1, y1, x2, y2, ...], ...]``.

:func:`to_rle` validates one segmentation against the video size and normalises it to a compressed
RLE (or ``None`` when absent). Validation matters for safety, not only for clear messages:
``pycocotools``' C decoder writes ``sum(counts)`` values into an ``H*W`` buffer without a bounds
check, so :func:`decode_rle` first checks that the runs cover exactly ``H*W`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from datagen.record import BadVideo

RLE = dict[str, Any]


class MaskFormatError(ValueError):
    """A segmentation is malformed; the message says what was expected."""


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def to_rle(segm: object, height: int, width: int) -> RLE | None:
    """Validate one segmentation and normalise it to a compressed RLE.

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
                f"expected an RLE with keys 'size' and 'counts', got keys {sorted(segm)}"
            )
        size = segm["size"]
        if (
            not isinstance(size, list | tuple)
            or len(size) != 2
            or not all(_is_number(s) and float(s).is_integer() for s in size)
        ):
            raise MaskFormatError(f"expected RLE 'size' = [height, width] integers, got {size!r}")
        if [int(size[0]), int(size[1])] != [height, width]:
            raise MaskFormatError(
                f"RLE size {list(size)} does not match the video size [height, width] = "
                f"[{height}, {width}]"
            )
        counts = segm["counts"]
        if isinstance(counts, str):
            return {"size": [height, width], "counts": counts.encode("ascii", "replace")}
        if isinstance(counts, bytes):
            return {"size": [height, width], "counts": counts}
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise MaskFormatError("expected RLE 'counts' to be non-negative integers")
            if sum(counts) != height * width:
                raise MaskFormatError(
                    f"RLE counts sum to {sum(counts)}, expected height*width = {height * width}"
                )
            return mask_utils.frPyObjects(
                {"size": [height, width], "counts": counts}, height, width
            )
        raise MaskFormatError(
            f"expected RLE 'counts' to be a string or a list of ints, got {type(counts).__name__}"
        )
    if isinstance(segm, list):
        polys = [p for p in segm if p]  # an empty polygon list part carries no area
        for p in polys:
            if not isinstance(p, list) or len(p) < 6 or len(p) % 2 or not all(map(_is_number, p)):
                raise MaskFormatError(
                    "expected a polygon [x1, y1, x2, y2, ...] with at least 3 points"
                )
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    raise MaskFormatError(
        f"expected null, an RLE dict or a polygon list, got {type(segm).__name__}"
    )


def rle_area(rle: RLE | None) -> int:
    """Number of foreground pixels of a compressed RLE (0 for ``None``); no decoding."""
    return 0 if rle is None else int(mask_utils.area(rle))


def _string_counts_total(counts: bytes, limit: int) -> int:
    """Sum of the runs of a compressed COCO counts string (mirror of ``rleFrString``).

    Returns -1 as soon as a run is negative or the running total exceeds ``limit``.
    """
    runs: list[int] = []
    total = 0
    p = 0
    n = len(counts)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                return -1  # truncated: a continuation bit with nothing after it
            c = counts[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if k > 7:  # runs are < 2**30 for any frame we accept; longer means garbage
                return -1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return -1
        runs.append(x)
        total += x
        if total > limit:
            return -1
    return total


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode a compressed RLE from :func:`to_rle` to an ``(H, W)`` bool mask.

    Raises:
        MaskFormatError: when the runs do not cover exactly ``H*W`` pixels.
    """
    h, w = rle["size"]
    total = _string_counts_total(rle["counts"], h * w)
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
