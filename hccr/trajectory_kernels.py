"""The trajectory maps' resampling and drawing passes, compiled with numba (`hccr.trajectory` is
their only user).

Each segment is drawn as a capsule (a round pen of radius r swept along it) with a one-pixel
anti-aliased edge, into the ink channel and, weighted, into the two direction channels nearest
to its direction, in one pass over its pixels. Overlapping segments take the maximum, as ink
does. As numpy, the per-stroke interpolation and per-segment pixel loops cost several times the
whole model; `cache=True` keeps the machine code beside this module
(`hccr.trajectory.warm_up`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def resample_flat(points, ends, step):  # type: ignore[no-untyped-def]
    """Points at equal arc-length `step`s along each stroke, both ends kept.

    Args:
        points: (M, 2) float64 points of all strokes, stroke after stroke.
        ends: (K,) int64 end index (exclusive) of each stroke in `points`.
    Returns:
        (new points (M', 2) float64, new ends (K,) int64); a stroke without length keeps its
        first point only (a dot).
    """
    k = ends.shape[0]
    counts = np.empty(k, np.int64)
    start = 0
    for s in range(k):
        run = 0.0
        for i in range(start, ends[s] - 1):
            run += math.hypot(points[i + 1, 0] - points[i, 0], points[i + 1, 1] - points[i, 1])
        counts[s] = 1 if run <= 0.0 else max(1, int(math.ceil(run / step))) + 1
        start = ends[s]
    out = np.empty((counts.sum(), 2), np.float64)
    new_ends = np.cumsum(counts)
    start, o = 0, 0
    for s in range(k):
        end, n = ends[s], counts[s]
        out[o] = points[start]
        if n > 1:
            run = 0.0
            for i in range(start, end - 1):
                run += math.hypot(points[i + 1, 0] - points[i, 0], points[i + 1, 1] - points[i, 1])
            gap = run / (n - 1)
            i, done, target = start, 0.0, gap  # segment i spans arc [done, done + its length)
            for j in range(1, n - 1):
                seg = math.hypot(points[i + 1, 0] - points[i, 0], points[i + 1, 1] - points[i, 1])
                while done + seg < target and i < end - 2:
                    done += seg
                    i += 1
                    seg = math.hypot(
                        points[i + 1, 0] - points[i, 0], points[i + 1, 1] - points[i, 1]
                    )
                t = 0.0 if seg <= 0.0 else min(1.0, (target - done) / seg)
                out[o + j, 0] = points[i, 0] + t * (points[i + 1, 0] - points[i, 0])
                out[o + j, 1] = points[i, 1] + t * (points[i + 1, 1] - points[i, 1])
                target += gap
            out[o + n - 1] = points[end - 1]
        o += n
        start = end
    return out, new_ends


@njit(cache=True, nogil=True)
def _capsule(out, x0, y0, x1, y1, radius, ink, ch_a, wa, ch_b, wb):  # type: ignore[no-untyped-def]
    """max-blends the capsule (x0, y0)-(x1, y1) of `radius` into the ink channel 0 (when `ink`)
    and, times `wa` / `wb` (0..1), into channels `ch_a` / `ch_b` (skipped when 0)."""
    size = out.shape[1]
    reach = radius + 1.0
    xa = max(0, int(math.floor(min(x0, x1) - reach)))
    xb = min(size - 1, int(math.ceil(max(x0, x1) + reach)))
    ya = max(0, int(math.floor(min(y0, y1) - reach)))
    yb = min(size - 1, int(math.ceil(max(y0, y1) + reach)))
    dx, dy = x1 - x0, y1 - y0
    len2 = dx * dx + dy * dy
    far = (radius + 0.5) * (radius + 0.5)
    for py in range(ya, yb + 1):
        cy = py + 0.5  # pixel centres at half-integers, as the image normalisation's affine map
        for px in range(xa, xb + 1):
            cx = px + 0.5
            t = 0.0
            if len2 > 0.0:
                t = ((cx - x0) * dx + (cy - y0) * dy) / len2
                t = min(1.0, max(0.0, t))
            ex, ey = cx - (x0 + t * dx), cy - (y0 + t * dy)
            d2 = ex * ex + ey * ey
            if d2 >= far:
                continue
            cover = min(1.0, radius + 0.5 - math.sqrt(d2))
            v = int(255.0 * cover + 0.5)
            if ink and v > out[0, py, px]:
                out[0, py, px] = v
            if ch_a > 0:
                v = int(255.0 * cover * wa + 0.5)
                if v > out[ch_a, py, px]:
                    out[ch_a, py, px] = v
            if ch_b > 0:
                v = int(255.0 * cover * wb + 0.5)
                if v > out[ch_b, py, px]:
                    out[ch_b, py, px] = v


@njit(cache=True, nogil=True)
def draw_maps(points, ends, radius, out, pen_up):  # type: ignore[no-untyped-def]
    """Normalised, resampled points -> `out`, the zeroed (C, S, S) uint8 maps, drawn in place.

    Args:
        points: (M, 2) float64 points of all strokes, stroke after stroke, in output pixels.
        ends: (K,) int64 end index (exclusive) of each stroke in `points`.
        radius: pen radius in output pixels.
        out: channel 0 ink, 1..8 the 8 directions (0 = +x, then every 45 degrees towards +y,
            y pointing down), 9 the pen-up moves when `pen_up`.
    """
    sector = math.pi / 4.0
    norm = 1.0 / math.sin(sector)
    start = 0
    for k in range(ends.shape[0]):
        end = ends[k]
        if end - start == 1:  # a dot: ink only, it has no direction
            x, y = points[start, 0], points[start, 1]
            _capsule(out, x, y, x, y, radius, True, 0, 0.0, 0, 0.0)
        for i in range(start, end - 1):
            x0, y0 = points[i, 0], points[i, 1]
            x1, y1 = points[i + 1, 0], points[i + 1, 1]
            dx, dy = x1 - x0, y1 - y0
            if dx == 0.0 and dy == 0.0:
                _capsule(out, x0, y0, x1, y1, radius, True, 0, 0.0, 0, 0.0)
                continue
            angle = math.atan2(dy, dx)
            if angle < 0.0:
                angle += 2.0 * math.pi
            lo = int(angle / sector) % 8
            phi = angle - lo * sector
            # parallelogram rule: the unit direction = a * e_lo + b * e_hi (Bai & Huo 2005)
            a = min(1.0, max(0.0, math.sin(sector - phi) * norm))
            b = min(1.0, max(0.0, math.sin(phi) * norm))
            _capsule(out, x0, y0, x1, y1, radius, True, 1 + lo, a, 1 + (lo + 1) % 8, b)
        if pen_up and k + 1 < ends.shape[0]:
            x0, y0 = points[end - 1, 0], points[end - 1, 1]
            x1, y1 = points[end, 0], points[end, 1]
            _capsule(out, x0, y0, x1, y1, radius, False, 9, 1.0, 0, 0.0)  # a move, not ink
        start = end
    return out
