"""Read the tracked region out of a tracking output (the object painted in the tracking colour).

For the ``tracking`` task a method outputs the input video with the tracked object (and, for
GenProp, its effects) filled with solid red ``(255, 0, 0)``. The tracked region of a frame is the
set of pixels whose colour is within :data:`TRACK_COLOR_TOLERANCE` of that colour in every channel
(L-infinity distance on 0..255 values). 60 tolerates H.264 ringing and a slightly-off generated
red, while staying far from natural colours a toy world uses for objects. When the input video is
given, pixels that were already red in the input are not counted (the method did not paint them).
"""

from __future__ import annotations

import numpy as np

TRACK_COLOR: tuple[int, int, int] = (255, 0, 0)
TRACK_COLOR_TOLERANCE = 60  # max |channel - colour| on 0..255 for a pixel to count as painted


def near_color(
    video: np.ndarray,
    color: tuple[int, int, int] = TRACK_COLOR,
    tolerance: int = TRACK_COLOR_TOLERANCE,
) -> np.ndarray:
    """``(..., H, W)`` bool: where ``(..., H, W, 3)`` uint8 is within ``tolerance`` of ``color``."""
    diff = np.abs(video.astype(np.int16) - np.asarray(color, np.int16))
    return diff.max(axis=-1) <= tolerance


def tracked_region(
    output: np.ndarray,
    input_video: np.ndarray | None = None,
    *,
    color: tuple[int, int, int] = TRACK_COLOR,
    tolerance: int = TRACK_COLOR_TOLERANCE,
) -> np.ndarray:
    """The painted region per frame of a tracking output.

    Args:
        output: ``(T, H, W, 3)`` uint8, the method's tracking video.
        input_video: ``(T, H, W, 3)`` uint8 original video; where given, pixels already near the
            colour in the input are excluded.
        color: the tracking colour.
        tolerance: L-infinity colour tolerance on 0..255.

    Returns:
        ``(T, H, W)`` bool.
    """
    region = near_color(output, color, tolerance)
    if input_video is not None:
        if input_video.shape != output.shape:
            raise ValueError(f"input {input_video.shape} and output {output.shape} differ")
        region &= ~near_color(input_video, color, tolerance)
    return region
