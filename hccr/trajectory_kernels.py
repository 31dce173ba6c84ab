"""The trajectory maps' drawing pass, compiled with numba (`hccr.trajectory` is its only user).

Each segment is drawn as a capsule (a round pen of radius r swept along it) with a one-pixel
anti-aliased edge, into the ink channel and, weighted, into the two direction channels nearest
to its direction. Overlapping segments take the maximum, as ink does. In numpy the per-segment
bounding-box loops cost ~50x more than here; `cache=True` keeps the machine code beside this
module (`hccr.trajectory.warm_up`).
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True, nogil=True)
def _capsule(out, ch, x0, y0, x1, y1, radius, weight):  # type: ignore[no-untyped-def]
    """max-blends the capsule (x0, y0)-(x1, y1) of `radius` times `weight` (0..1) into out[ch]."""
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
            cover = radius + 0.5 - math.sqrt(d2)
            v = int(255.0 * min(1.0, cover) * weight + 0.5)
            if v > out[ch, py, px]:
                out[ch, py, px] = v


@njit(cache=True, nogil=True)
def draw_maps(points, ends, radius, directions, pen_up):  # type: ignore[no-untyped-def]
    """Normalised points -> (C, S, S) uint8 maps, drawn in place into `pen_up`'s sized output.

    Args:
        points: (M, 2) float64 points of all strokes, stroke after stroke, in output pixels.
        ends: (K,) int64 end index (exclusive) of each stroke in `points`.
        radius: pen radius in output pixels.
        directions: (C, S, S) uint8 output, zeroed: channel 0 ink, 1..8 the 8 directions
            (0 = +x, then every 45 degrees towards +y, y pointing down), 9 the pen-up moves when
            C == 10.
        pen_up: draw the moves between strokes into channel 9.
    """
    out = directions
    sector = math.pi / 4.0
    norm = 1.0 / math.sin(sector)
    start = 0
    for k in range(ends.shape[0]):
        end = ends[k]
        if end - start == 1:  # a dot: ink only, it has no direction
            x, y = points[start, 0], points[start, 1]
            _capsule(out, 0, x, y, x, y, radius, 1.0)
        for i in range(start, end - 1):
            x0, y0 = points[i, 0], points[i, 1]
            x1, y1 = points[i + 1, 0], points[i + 1, 1]
            _capsule(out, 0, x0, y0, x1, y1, radius, 1.0)
            dx, dy = x1 - x0, y1 - y0
            if dx == 0.0 and dy == 0.0:
                continue
            angle = math.atan2(dy, dx)
            if angle < 0.0:
                angle += 2.0 * math.pi
            lo = int(angle / sector) % 8
            phi = angle - lo * sector
            # parallelogram rule: the unit direction = a * e_lo + b * e_hi (Bai & Huo 2005)
            a = math.sin(sector - phi) * norm
            b = math.sin(phi) * norm
            if a > 0.0:
                _capsule(out, 1 + lo, x0, y0, x1, y1, radius, min(1.0, a))
            if b > 0.0:
                _capsule(out, 1 + (lo + 1) % 8, x0, y0, x1, y1, radius, min(1.0, b))
        if pen_up and k + 1 < ends.shape[0]:
            nx, ny = points[end, 0], points[end, 1]
            _capsule(out, 9, points[end - 1, 0], points[end - 1, 1], nx, ny, radius, 1.0)
        start = end
    return out
