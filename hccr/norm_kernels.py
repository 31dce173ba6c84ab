"""The normalisation's per-pixel passes, compiled with numba (`hccr.preprocess` is their only
user and the home of the normalisation itself).

As numpy and OpenCV calls, most of their time went to call overhead and temporaries on a 64x64
character. `cache=True` keeps the machine code beside this module, so only the first call on a
machine compiles (`hccr.preprocess.warm_up`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Row `level` maps grey g to min(255, g * 255 / level), truncated (float32, as it always was).
STRETCH_LUTS = np.clip(
    np.arange(256, dtype=np.float32)[None, :]
    * (255.0 / np.maximum(np.arange(256, dtype=np.float32), 1.0))[:, None],
    0,
    255,
).astype(np.uint8)


@njit(cache=True, nogil=True)
def ink_map(grey, invert):  # type: ignore[no-untyped-def]
    """A new ink map: `grey` (inverted when `invert`) less its background level.

    The median pixel is background in a character image (ink covers well under half of it).
    Most inputs (CASIA bitmaps: pure white paper) have a 0 background, which a count of the 0
    pixels shows without a histogram.
    """
    h, w = grey.shape
    ink = np.empty((h, w), np.uint8)
    zeros = 0
    for y in range(h):
        for x in range(w):
            v = 255 - grey[y, x] if invert else grey[y, x]
            ink[y, x] = v
            zeros += v == 0
    if 2 * zeros >= h * w:
        return ink
    flat = ink.reshape(-1)
    hist = np.zeros(256, np.int64)
    for v in flat:
        hist[v] += 1
    target, cum, background = 0.5 * flat.size, 0, 255
    for v in range(256):
        cum += hist[v]
        if cum >= target:
            background = v
            break
    for i in range(flat.size):
        flat[i] = flat[i] - background if flat[i] > background else 0
    return ink


@njit(cache=True, nogil=True)
def ink_box_moments(ink, threshold):  # type: ignore[no-untyped-def]
    """Bounding box of the pixels >= threshold and the raw grey-level moments inside it:
    (x0, y0, w, h, m00, m10, m01, m20, m02); w = 0 when no pixel reaches the threshold."""
    h, w = ink.shape
    # row and column maxima (loops the compiler vectorises) give the box
    col_max = np.zeros(w, np.uint8)
    y0, y1 = h, -1
    for y in range(h):
        row = ink[y]
        row_max = np.uint8(0)
        for x in range(w):
            v = row[x]
            col_max[x] = max(col_max[x], v)
            row_max = max(row_max, v)
        if row_max >= threshold:
            y0 = min(y0, y)
            y1 = y
    if y1 < 0:
        return 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0
    x0, x1 = 0, w - 1
    while col_max[x0] < threshold:
        x0 += 1
    while col_max[x1] < threshold:
        x1 -= 1
    # moments from row and column sums; integer sums are exact, as cv2.moments' are for 8 bits
    bw = x1 - x0 + 1
    col_sum = np.zeros(bw, np.int32)
    m00 = m01 = m02 = 0
    for y in range(y0, y1 + 1):
        row = ink[y, x0 : x1 + 1]
        row_sum = 0
        for x in range(bw):
            v = np.int32(row[x])
            col_sum[x] += v
            row_sum += v
        dy = y - y0
        m00 += row_sum
        m01 += dy * row_sum
        m02 += dy * dy * row_sum
    m10 = m20 = 0
    for x in range(bw):
        c = np.int64(col_sum[x])
        m10 += x * c
        m20 += x * x * c
    return x0, y0, bw, y1 - y0 + 1, float(m00), float(m10), float(m01), float(m20), float(m02)


@njit(cache=True, nogil=True)
def warp_scaled(src, ax, bx, ay, by, size):  # type: ignore[no-untyped-def]
    """`cv2.warpAffine(src, [[ax, 0, bx], [0, ay, by]], (size, size), INTER_LINEAR)` with a zero
    border, for the axis-aligned maps `normalize` uses.

    The map is separable, so each output column and row is located once, not each pixel. The
    arithmetic is OpenCV 5's (the float32 matrix inverted in double, source coordinates in
    float32 with a fused multiply-add, bilinear weights in float32, rounded to nearest even):
    the output equals OpenCV's but for a rare pixel one grey level apart (about 1 in 100,000;
    tests/test_preprocess.py holds it to that), at a fraction of its cost.
    """
    rows, cols = src.shape
    # the inverse map x = c x' + d, as cv2.invertAffineTransform computes it in double
    ax, bx, ay, by = np.float64(ax), np.float64(bx), np.float64(ay), np.float64(by)
    det = 1.0 / (ax * ay)
    cx, cy = ay * det, ax * det
    dx, dy = -cx * bx, -cy * by
    # columns: float32 fused multiply-add (float32 products are exact in float64)
    col_i = np.empty(size, np.int64)
    col_f = np.empty(size, np.float32)
    cxf, dxf = np.float32(cx), np.float32(dx)
    for x in range(size):
        p = np.float32(np.float64(cxf) * np.float64(np.float32(x)) + np.float64(dxf))
        col_i[x] = np.int64(np.floor(p))
        col_f[x] = p - np.float32(col_i[x])
    # rows: the row's offset in double, rounded to float32
    row_i = np.empty(size, np.int64)
    row_f = np.empty(size, np.float32)
    for y in range(size):
        p = np.float32(y * cy + dy)
        row_i[y] = np.int64(np.floor(p))
        row_f[y] = p - np.float32(row_i[y])
    padded = np.zeros((rows + 2, cols + 2), np.float32)  # one zero pixel around: no bound checks
    for y in range(rows):
        for x in range(cols):
            padded[y + 1, x + 1] = src[y, x]
    out = np.zeros((size, size), np.uint8)
    for y in range(size):
        iy = row_i[y]
        if iy < -1 or iy >= rows:
            continue
        fy = row_f[y]
        top, bottom = padded[iy + 1], padded[iy + 2]
        for x in range(size):
            ix = col_i[x]
            if ix < -1 or ix >= cols:
                continue
            fx = col_f[x]
            p00, p01 = top[ix + 1], top[ix + 2]
            p10, p11 = bottom[ix + 1], bottom[ix + 2]
            v0 = p00 + fx * (p01 - p00)
            v1 = p10 + fx * (p11 - p10)
            v = np.rint(v0 + fy * (v1 - v0))
            out[y, x] = 255 if v > 255 else (0 if v < 0 else np.uint8(v))
    return out


@njit(cache=True, nogil=True)
def stretch_inplace(image, low, fraction, luts):  # type: ignore[no-untyped-def]
    """Maps the grey level below which `fraction` of the pixels >= `low` lie to 255 (rows of
    `luts`), in place, unless that level is already >= 250; returns the level."""
    # The 90th percentile of the ink: strong ink saturates whatever the scanner's contrast, the
    # soft edges stay grey.
    flat = image.reshape(-1)
    # four interleaved histograms: consecutive equal pixels do not wait on one counter
    hist = np.zeros((4, 256), np.int32)
    n4 = flat.size // 4 * 4
    for i in range(0, n4, 4):
        hist[0, flat[i]] += 1
        hist[1, flat[i + 1]] += 1
        hist[2, flat[i + 2]] += 1
        hist[3, flat[i + 3]] += 1
    for i in range(n4, flat.size):
        hist[0, flat[i]] += 1
    counts = np.zeros(256, np.int64)
    total = 0
    for v in range(256):
        counts[v] = hist[0, v] + hist[1, v] + hist[2, v] + hist[3, v]
        total += counts[v] if v >= low else 0
    target = fraction * total
    level, cum = 255, 0
    for v in range(low, 256):
        cum += counts[v]
        if cum >= target:
            level = v
            break
    if level < 250:
        lut = luts[level]
        for i in range(flat.size):
            flat[i] = lut[flat[i]]
    return level
