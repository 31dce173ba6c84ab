"""The pen renderer: online strokes (CASIA `.pot`, stroke medians, canvas drawings) -> ink maps.

Used by `hccr-data pack` for `.pot` files and by the synthetic generator, so that online
samples and pen-drawn synthetic samples are inked the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_SHIFT = 4  # fractional bits for cv2 drawing: sub-pixel stroke positions


def render_strokes(
    strokes: Sequence[np.ndarray],
    pen_width: float = 0.045,
    canvas: int = 128,
    margin: float = 0.08,
    widths: Sequence[np.ndarray] | None = None,
    levels: Sequence[int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Draws strokes with a round anti-aliased pen; returns a (canvas, canvas) uint8 ink map.

    Args:
        strokes: (N, 2) arrays of (x, y) points, any units, y pointing down.
        pen_width: pen diameter as a fraction of the character box's longer side.
        canvas: side of the square output.
        margin: blank border as a fraction of `canvas`.
        widths: optional per-point pen-width factors, one (N,) array per stroke (pen pressure:
            a segment is drawn `pen_width * mean(factor of its two ends)` wide).
        levels: optional ink level (1..255) per stroke; 255 everywhere by default.
        antialias: anti-aliased edges; False draws ~3x faster, for callers that blur anyway.
    """
    if widths is not None or levels is not None:
        keep = [i for i, s in enumerate(strokes) if len(s)]
        widths = [widths[i] for i in keep] if widths is not None else None
        levels = [levels[i] for i in keep] if levels is not None else None
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes if len(s)]
    if not strokes:
        raise ValueError("no strokes to render")
    points = np.concatenate(strokes)
    lo = points.min(axis=0)
    extent = float((points.max(axis=0) - lo).max())
    box = canvas * (1 - 2 * margin)
    scale = box / extent if extent > 0 else 1.0
    span = (points.max(axis=0) - lo) * scale
    offset = (canvas - span) / 2  # centre the character's bounding box
    thickness = max(1, round(pen_width * box))
    image = np.zeros((canvas, canvas), np.uint8)
    line = cv2.LINE_AA if antialias else cv2.LINE_8
    # all points mapped at once, then cut back into strokes
    fixed = np.round(((points - lo) * scale + offset) * (1 << _SHIFT)).astype(np.int32)
    ends = np.cumsum([len(s) for s in strokes]).tolist()
    for i, (a, b) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
        xy = fixed[a:b]
        level = int(levels[i]) if levels is not None else 255
        if len(xy) == 1 or (xy == xy[0]).all():
            radius = max(1, thickness // 2) << _SHIFT
            cv2.circle(image, (int(xy[0, 0]), int(xy[0, 1])), radius, level, -1, line, _SHIFT)
        elif widths is None:
            cv2.polylines(image, [xy], False, level, thickness, line, _SHIFT)
        else:
            factors = np.asarray(widths[i], np.float64)
            _draw_pressure(image, xy, factors, pen_width * box, level, line)
    return image


def _draw_pressure(
    image: np.ndarray, xy: np.ndarray, factors: np.ndarray, width: float, level: int, line: int
) -> None:
    # Segment thickness is an integer in cv2: draw each run of equal thickness as one polyline.
    seg = np.maximum(1, np.rint(width * (factors[:-1] + factors[1:]) / 2)).astype(np.int32)
    cuts = np.flatnonzero(np.diff(seg)) + 1
    start = 0
    for end in [*cuts.tolist(), len(seg)]:
        cv2.polylines(image, [xy[start : end + 1]], False, level, int(seg[start]), line, _SHIFT)
        start = end


def render_canvas(
    strokes: Sequence[np.ndarray], side: int, brush_radius: float, antialias: bool = True
) -> np.ndarray:
    """Draws strokes where they are, as a drawing canvas does; returns the (side, side) ink map.

    Unlike `render_strokes` nothing is fitted or centred: points are canvas pixel coordinates
    (x, y; y down) and the round brush is `2 * brush_radius` px wide, as the demo's panel
    inks the strokes it receives. The result is the drawing's coverage: the alpha channel of the canvas'
    RGBA image, or 255 minus the grey of black ink on white.
    """
    image = np.zeros((side, side), np.uint8)
    thickness = max(1, round(2 * brush_radius))
    line = cv2.LINE_AA if antialias else cv2.LINE_8
    for s in strokes:
        xy = np.round(np.asarray(s, np.float64).reshape(-1, 2) * (1 << _SHIFT)).astype(np.int32)
        if len(xy) == 0:
            continue
        if len(xy) == 1 or (xy == xy[0]).all():  # a click: one dab of the brush
            radius = round(brush_radius * (1 << _SHIFT))
            cv2.circle(image, (int(xy[0, 0]), int(xy[0, 1])), radius, 255, -1, line, _SHIFT)
        else:
            cv2.polylines(image, [xy], False, 255, thickness, line, _SHIFT)
    return image
