"""Part layout: a writer sizes and places a character's parts against each other as wholes.

The stroke style's per-stroke departures are independent draws, so their class means are
hairy, while real writers keep the strokes of one part together and vary the parts: a cover
drawn wider than what it covers, a lower part squeezed, a left side narrower than the right.
`draw_layout` draws one such correlated deformation per sample: the character is split by a
line across its main axis (top / bottom, or left / right), the split line moves (one part takes
more of the height or width), and each part gets its own scale and shift across the axis,
blended over a narrow band so strokes that cross the line stay whole. The sizes come from the
fitted writer statistics (data_tools/writer_stats.json, the radical's log scale and shift
against the rest), taken at up to the generator's share of their spread.

`char_shape` is the fitted slant, rise and aspect of the whole character that the stroke style
already draws (`styles.perturb_strokes`), for the font-based styles, whose glyphs are print-
square where handwriting is often narrower.

`Layout.apply` moves points (the stroke style, pen trajectories); `Layout.remap_grid` gives the
same map as source coordinates for `cv2.remap` (the font styles). An image remap is a backward
map, so images get the inverse deformation of points; the draws are symmetric (log scales and
shifts about 0), so the two have the same distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_tools.writer_stats import load_writer_stats

_SHARE = 0.35  # as styles._SHAPE_SHARE: the fitted spreads include the alignment's own noise
_TOP_BOTTOM = 0.6  # share of top / bottom splits; the rest split left / right
_BAND = 0.03  # half-width of the blend across the split line, in units of the box
_CUT = (0.35, 0.65)  # where the split line falls, as a share of the box along the axis
_MIN_PART = 0.2  # a part keeps at least this share of the box along the axis


@dataclass(frozen=True)
class Layout:
    """One drawn deformation, in units of a box (lo, hi) on both axes."""

    axis: int  # 1: split along y (top / bottom), 0: along x (left / right)
    cut: float  # split line, share of the box along `axis`
    new_cut: float  # where it goes
    log_scale: tuple[float, float]  # each part's scale across the axis
    shift: tuple[float, float]  # each part's shift across the axis, share of the box

    def _parts(self, along: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # scale and shift across the axis at each coordinate along it: the first part's below
        # the split line, the second's above, blended over the band
        part = 1.0 / (1.0 + np.exp(-(along - self.cut) / (_BAND / 4)))
        ls = self.log_scale[0] + (self.log_scale[1] - self.log_scale[0]) * part
        return np.exp(ls), self.shift[0] + (self.shift[1] - self.shift[0]) * part

    def _along(self, along: np.ndarray) -> np.ndarray:
        # the split line moves to `new_cut`; each side is stretched linearly
        c, nc = self.cut, self.new_cut
        return np.where(along < c, along * (nc / c), nc + (along - c) * ((1 - nc) / (1 - c)))

    def apply(self, points: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        """(N, 2) x, y points in a box [lo, hi]^2 -> the moved points (a new array)."""
        q = (np.asarray(points, np.float64) - lo) / (hi - lo)
        out = np.empty_like(q)
        along, across = q[:, self.axis], q[:, 1 - self.axis]
        scale, shift = self._parts(along)
        out[:, self.axis] = self._along(along)
        out[:, 1 - self.axis] = 0.5 + (across - 0.5) * scale + shift
        return out * (hi - lo) + lo

    def remap_grid(self, size: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        """(size, size) float32 source x and y maps for `cv2.remap`, the box [lo, hi] in
        pixels: each pixel reads from where `apply` would move it."""
        u = (np.arange(size, dtype=np.float64) - lo) / (hi - lo)
        scale, shift = self._parts(u)
        across = 0.5 + (u[None, :] - 0.5) * scale[:, None] + shift[:, None]  # [along, across]
        along_px = np.broadcast_to((self._along(u) * (hi - lo) + lo)[:, None], (size, size))
        across_px = across * (hi - lo) + lo
        if self.axis == 1:  # rows follow y (along), columns x (across)
            mx, my = across_px, along_px
        else:
            mx, my = along_px.T, across_px.T
        return mx.astype(np.float32), my.astype(np.float32)


def draw_layout(rng: np.random.Generator) -> Layout:
    """A random part layout from the fitted radical statistics (9 uniform draws)."""
    stats = load_writer_stats()
    u = rng.random(9)
    axis = 1 if u[0] < _TOP_BOTTOM else 0
    cut = _CUT[0] + (_CUT[1] - _CUT[0]) * u[1]
    share = _SHARE * u[2]  # how much this writer moves parts: from not at all to the cap
    # the radical's log scale and shift deviations, one draw per part; the first part's scale
    # along the axis moves the split line
    (ls0, dx0, dy0), (ls1, dx1, dy1) = (
        stats.deviations("radical", u[3:6]) * share,
        stats.deviations("radical", u[6:9]) * share,
    )
    new_cut = float(np.clip(cut * np.exp(ls0 - ls1), _MIN_PART, 1 - _MIN_PART))
    across = (dx0, dx1) if axis == 1 else (dy0, dy1)
    return Layout(axis, cut, new_cut, (float(ls0), float(ls1)), tuple(map(float, across)))


def char_shape(rng: np.random.Generator) -> np.ndarray:
    """(2, 2) slant, rise and aspect of a whole character, as the stroke style draws them
    (`WriterStats.char_shape`): the fitted departures at 0.5-1.5 of their spread plus a habit
    (3 + 3 + 1 uniform draws)."""
    u = rng.random(7)
    return load_writer_stats().char_shape(u[:3], 0.5 + u[6], u[3:6])
