"""The font-based synthetic handwriting styles (the stroke style is in `data_tools.styles`).

- `font`: an installed font's glyph (Kai faces preferred), warped (affine + elastic), with
  uneven stroke width, blur and noise.
- `skeleton`: the font glyph thinned to its skeleton, warped, and re-inked with a round pen
  of random width: font shapes with pen-like strokes.

Both take a `numpy.random.Generator` and return an ink map (background 0, ink bright) on a
`CANVAS` x `CANVAS` canvas, like the stroke style.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_tools.layout import char_shape, draw_layout
from data_tools.styles import CANVAS, scan_finish

_BOX = (0.1 * CANVAS, 0.9 * CANVAS)  # where `_warp_matrix` puts the glyph's longer side


def _warp_matrix(h: int, w: int, rng: np.random.Generator, layout: bool) -> np.ndarray:
    # Glyph (h, w) -> centred on the canvas, longer side ~80% of it, with slant/rotation/aspect:
    # a print-like spread about the square, or with `layout` a writer's fitted slant, rise and
    # aspect (drawn after the others, so that without it the draws are unchanged).
    scale = CANVAS * 0.8 / max(h, w)
    shear = rng.normal(0.0, 0.12)
    ang = rng.normal(0.0, 0.06)
    aspect = np.exp(rng.normal(0.0, 0.1))
    shift = rng.normal(0.0, 2.0, size=2)
    a = (char_shape(rng) if layout else np.array([[aspect, shear], [0.0, 1.0 / aspect]])) * scale
    a = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) @ a
    if layout:  # a wide or slanted shape must still fit: its box at most 90% of the canvas
        corners = a @ np.array([[0, w, 0, w], [0, 0, h, h]], np.float64)
        extent = np.ptp(corners, axis=1).max()
        a *= min(1.0, 0.9 * CANVAS / extent)
    centre = np.array([w / 2, h / 2])
    t = CANVAS / 2 - a @ centre + shift
    return np.hstack([a, t[:, None]]).astype(np.float32)


def _upsampling_matrix(n: int, size: int) -> np.ndarray:
    # (size, n) matrix W with W @ v == cv2.resize(v, cubic): a smooth field from n control
    # values by two small matmuls, ~10x cheaper than cv2.resize on a tiny float image
    eye = np.eye(n, dtype=np.float32)
    return np.stack(
        [cv2.resize(eye[k : k + 1], (size, 1), interpolation=cv2.INTER_CUBIC)[0] for k in range(n)],
        1,
    )


_UPSAMPLE_4 = _upsampling_matrix(4, CANVAS)
_GRID_Y, _GRID_X = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)


def _elastic_maps(rng: np.random.Generator, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    # Coarse random displacements (4x4 grid) upsampled smoothly: a cheap elastic field.
    grid = rng.normal(0.0, amplitude, size=(2, 4, 4)).astype(np.float32)
    dx = _UPSAMPLE_4 @ grid[0] @ _UPSAMPLE_4.T
    dy = _UPSAMPLE_4 @ grid[1] @ _UPSAMPLE_4.T
    return _GRID_X + dx, _GRID_Y + dy


def _warp(glyph: np.ndarray, rng: np.random.Generator, layout: bool = False) -> np.ndarray:
    # The affine placement, then (80%) an elastic bend and, with `layout`, the parts moved
    # against each other (`data_tools.layout`), both in one remap.
    h, w = glyph.shape
    matrix = _warp_matrix(h, w, rng, layout)
    out = cv2.warpAffine(glyph, matrix, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR)
    maps = None
    if rng.random() < 0.8:
        maps = _elastic_maps(rng, rng.uniform(1.0, 3.5))
    if layout:
        lx, ly = draw_layout(rng).remap_grid(CANVAS, *_BOX)
        maps = (lx, ly) if maps is None else (maps[0] - _GRID_X + lx, maps[1] - _GRID_Y + ly)
    if maps is not None:
        out = cv2.remap(out, maps[0], maps[1], cv2.INTER_LINEAR)
    return out


def thinning_profile(glyph: np.ndarray) -> tuple[float, int]:
    """(typical stroke width in px, how many 3x3 erosions every stroke survives) of a glyph.

    The width is twice the 90th percentile of the distance map (the thick strokes); the budget
    keeps serif faces' thin horizontals, which erosions that suit their verticals would erase.
    """
    from skimage.morphology import skeletonize  # only the font styles need scikit-image

    ink = glyph > 127
    dist = cv2.distanceTransform(ink.astype(np.uint8), cv2.DIST_L2, 3)
    inside = dist[dist > 0]
    if inside.size == 0:
        return 0.0, 0
    ridge = dist[skeletonize(ink)]  # half-widths along the middle of every stroke
    budget = 0
    for k in (1, 2):  # a ridge pixel survives k erosions when it is more than k from the edge
        if (ridge > k + 0.5).mean() < 0.9:
            break
        budget = k
    return 2.0 * float(np.percentile(inside, 90)), budget


def render_font_sample(
    glyph: np.ndarray,
    profile: tuple[float, int],
    rng: np.random.Generator,
    scan_ink: bool = True,
    layout: bool = False,
) -> np.ndarray:
    """A font glyph (cropped ink map, `thinning_profile`) warped, thinned towards a pen's width,
    with uneven stroke width, blur and noise (`scan_ink` False: saturated, for ablations;
    `layout`: a writer's shape and part layout, `data_tools.layout`)."""
    width, budget = profile
    ink = _warp(glyph, rng, layout)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    target = rng.uniform(2.0, 4.0)  # pen width on the canvas, like the stroke style's
    erosions = min(budget, round((width - target) / 2))  # each takes a pixel off both sides
    if erosions > 0:
        ink = cv2.erode(ink, kernel, iterations=erosions)
    if rng.random() < 0.3:  # uneven width: thicker where a smooth random mask is high
        mask = cv2.resize(rng.random((3, 3)).astype(np.float32), (CANVAS, CANVAS)) > 0.6
        ink = np.where(mask, cv2.dilate(ink, kernel), ink)
    # a pen's ink, not a saturated print: the scans' ink levels (data_tools/measure_ink.py)
    if scan_ink:
        ink = (ink * np.float32(rng.uniform(0.65, 0.94))).astype(np.uint8)
    return scan_finish(ink, rng)


def skeleton_of(glyph: np.ndarray) -> np.ndarray:
    """The skeleton of a glyph, 2 px wide, as a 0/255 uint8 image (cache it per font and char)."""
    from skimage.morphology import skeletonize  # only the skeleton style needs scikit-image

    # thickened to 2 px so that warping (which resamples) cannot break its lines
    return cv2.dilate(skeletonize(glyph > 127).astype(np.uint8) * 255, np.ones((2, 2), np.uint8))


def render_skeleton_sample(
    skeleton: np.ndarray, rng: np.random.Generator, layout: bool = False
) -> np.ndarray:
    """A glyph skeleton warped (`layout` as in `render_font_sample`) and re-inked with a round
    pen of random width."""
    warped = _warp(skeleton, rng, layout) > 60
    dist = cv2.distanceTransform((~warped).astype(np.uint8) * 255, cv2.DIST_L2, 3)
    radius = rng.uniform(0.5, 2.0)  # pen radius in canvas pixels beyond the skeleton line
    ink = np.clip((radius + 0.5 - dist) * 255.0, 0.0, 255.0).astype(np.uint8)
    if rng.random() < 0.5:
        return ink  # canvas-like: uniform pen
    return scan_finish(ink, rng)
