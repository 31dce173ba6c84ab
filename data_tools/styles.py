"""Synthetic handwriting styles: the stroke style, and the scan look every style shares.

- `strokes`: Make Me a Hanzi stroke medians, departing from them stroke by stroke as a real
  writer does (data_tools/writer_stats.json: cut, rotated, resized, shifted, bowed; the
  radical moved against the rest; joined into cursive ligatures; slanted), rounded, bent
  elastically, and inked with the pen renderer, either as canvas input (thin uniform pen) or as
  a scanned ballpoint (widths and ink levels in the scans' range, pressure, grainy texture,
  smears at the ends, grey soft edges, uneven ink).
- `font` and `skeleton`: from an installed font's glyph, in `data_tools.glyph_styles`.

Every function takes a `numpy.random.Generator` and returns an ink map (background 0, ink
bright) on a `CANVAS` x `CANVAS` canvas; `hccr.preprocess.normalize` does the rest.
Elastic distortion follows Simard et al., "Best practices for convolutional neural networks
applied to visual document analysis", ICDAR 2003.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from data_tools.render import render_strokes
from data_tools.writer_stats import load_writer_stats

if TYPE_CHECKING:
    from data_tools.writer_habits import StrokeHabits

CANVAS = 96  # working canvas side; normalised to --size (64) afterwards
STYLES = ("strokes", "font", "skeleton")
DEFAULT_STYLE_WEIGHTS = {"strokes": 0.6, "font": 0.25, "skeleton": 0.15}
_STEP = 0.05  # resampling step of stroke polylines, in units of the character box
# Share of the fitted per-stroke and component spreads a sample takes at most: the alignment's
# own noise (cursive strokes matched to single medians) inflates them, and independent draws of
# every departure at full spread make scribbles no reader would recognise (contact sheet).
_SHAPE_SHARE = 0.35
_MAX_CUT = 0.3  # a stroke keeps at least 40% of its length: shorter, it reads as another stroke
_MAX_JOIN = 0.95  # some pen lifts stay, even for the most cursive writer


# ----- stroke style -------------------------------------------------------------------------


@dataclass(frozen=True)
class StrokeTemplate:
    """A character's medians resampled once (per class, not per sample) into one point array."""

    points: np.ndarray  # (M, 2) all strokes' points, stroke after stroke
    stroke: np.ndarray  # (M,) stroke index of each point
    t: np.ndarray  # (M,) position along its stroke, 0 at the start, 1 at the end
    starts: np.ndarray  # (n + 1,) first point of each stroke, then M
    point_centres: np.ndarray  # (M, 2) mean point of each point's stroke
    point_normals: np.ndarray  # (M, 2) its stroke's start-to-end chord turned 90 degrees
    bow: np.ndarray  # (M,) sin(pi t): how far a bent stroke moves at each point
    radical: np.ndarray | None = None  # (M,) bool: point of a radical stroke (radStrokes)

    @classmethod
    def from_medians(
        cls, strokes: list[np.ndarray], radicals: np.ndarray | None = None, step: float = _STEP
    ) -> StrokeTemplate:
        pts, ids, ts = [], [], []
        for i, s in enumerate(strokes):
            seg = np.sqrt((np.diff(s, axis=0) ** 2).sum(axis=1))
            arc = np.concatenate([[0.0], np.cumsum(seg)])
            n = max(2, int(arc[-1] / step) + 2)
            u = np.linspace(0.0, arc[-1], n)
            pts.append(np.stack([np.interp(u, arc, s[:, 0]), np.interp(u, arc, s[:, 1])], axis=1))
            ids.append(np.full(n, i))
            ts.append(np.linspace(0.0, 1.0, n))
        starts = np.concatenate([[0], np.cumsum([len(p) for p in pts])])
        stroke = np.concatenate(ids)
        centres = np.array([p.mean(axis=0) for p in pts])[stroke]
        chords = np.array([p[-1] - p[0] for p in pts])
        normals = np.stack([-chords[:, 1], chords[:, 0]], 1)[stroke]
        t = np.concatenate(ts)
        rad = None if radicals is None else np.asarray(radicals, bool)[stroke]
        return cls(np.concatenate(pts), stroke, t, starts, centres, normals, np.sin(np.pi * t), rad)


def _smooth(points: np.ndarray, starts: np.ndarray, passes: int) -> np.ndarray:
    # [1, 2, 1] / 4 passes round the corners (turns, hooks) the way a moving pen does; the end
    # points of every stroke stay put.
    ends = np.concatenate([starts[:-1], starts[1:] - 1])
    for _ in range(passes):
        keep = points[ends]
        points = points.copy()
        points[1:-1] = 0.25 * points[:-2] + 0.5 * points[1:-1] + 0.25 * points[2:]
        points[ends] = keep
    return points


_BRIDGE_T = np.linspace(0.0, 1.0, 7)[1:-1, None]  # interior points of a ligature curve


def _bridges(a: np.ndarray, b: np.ndarray, bend: np.ndarray) -> np.ndarray:
    # Cursive ligatures: quadratic curves from points a (J, 2) to points b, bowed sideways by
    # `bend` (J,) times their length -> (J, B, 2) interior points.
    normal = np.stack([a[:, 1] - b[:, 1], b[:, 0] - a[:, 0]], axis=1)
    ctrl = (a + b) / 2 + bend[:, None] * normal
    t = _BRIDGE_T[None]  # (1, B, 1)
    return (1 - t) ** 2 * a[:, None] + 2 * (1 - t) * t * ctrl[:, None] + t**2 * b[:, None]


def place_strokes(
    template: StrokeTemplate, per: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-point stroke parameters `per` (M, >= 7: keep-from, keep-to, cos, sin, shift x, shift
    y, bow) -> the points kept (M,) bool and every point (M, 2) rotated about its stroke's
    centre, shifted and bowed."""
    keep = (t >= per[:, 0]) & (t <= per[:, 1])
    q = template.points - template.point_centres
    c, sn = per[:, 2], per[:, 3]
    p = np.stack([c * q[:, 0] - sn * q[:, 1], sn * q[:, 0] + c * q[:, 1]], 1)
    p += (
        template.point_centres
        + per[:, 4:6]
        + (per[:, 6] * template.bow)[:, None] * template.point_normals
    )
    return keep, p


# Which of `perturb_strokes`'s 17 per-character uniforms are a writer's habits rather than one
# character's chance: the cursive knob (0), the radical's resize and move (3-6) and the slant,
# rise and aspect habit strengths (8-10).
HABITS = np.array([0, 3, 4, 5, 6, 8, 9, 10])


def perturb_strokes(
    template: StrokeTemplate,
    rng: np.random.Generator,
    habits: np.ndarray | None = None,
    stroke_habits: StrokeHabits | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Writer-like variation of a character's medians -> (strokes, per-point pen-width factors).

    The departures are drawn from the fitted writer statistics (data_tools/writer_stats.json):
    stroke start and end cuts, rotation, length, shift and bowing; the radical moved and
    resized against the rest; slant, rise and aspect; cursive joins at the fitted rate for the
    gap between two strokes. They are widened beyond the one writer they were fitted on: each
    sample is a writer of its own, `cursive` in [0, 1] scaling the stroke-level departures and
    the join rate (0 to twice the fitted rate), and habit strengths in [-0.5, 1.5] times the
    fitted median slant, rise and aspect (the mirrored habit included). The per-stroke rotation,
    length, shift and bowing and the radical's move are taken at `_SHAPE_SHARE` of their fitted
    spread. Vectorised over all points. It stays one function: every departure comes from one
    batch of random draws made at the top, whose order fixes the samples of a seed.

    `habits` (17 uniforms in [0, 1), of which the `HABITS` entries are used) makes every sample
    the same writer's: its cursive knob, radical resize and move and slant, rise and aspect
    habits are kept, the rest is drawn per character (the draws of `rng` are the same either way).
    `stroke_habits` (data_tools.writer_habits) adds the writer's stroke-level habits: a bias of
    the per-stroke departures for each kind of stroke, and its join rate per gap.
    """
    stats = load_writer_stats()
    n = len(template.starts) - 1
    sid, t = template.stroke, template.t
    # all random numbers in a few draws: per-stroke uniforms/normals and per-character ones
    un = rng.random((11, n))
    zn = rng.standard_normal(n)
    g = rng.standard_normal(4)
    gu = rng.random(17)
    if habits is not None:
        gu[HABITS] = np.asarray(habits)[HABITS]
    cursive = gu[0] ** 0.7  # one knob for this "writer": joins, rounding, departures
    shape = _SHAPE_SHARE * cursive
    # per-stroke departures from the fitted medians (rows 0-6), GROUPS["stroke"] order:
    # start_cut, end_cut, angle, log_length, shift_x, shift_y, bow
    dev = stats.deviations("stroke", un[:7])
    if stroke_habits is not None:
        dev = stroke_habits.departures(template.points, template.starts, dev)
    cut0 = stats.medians[("stroke", "start_cut")]
    cut1 = stats.medians[("stroke", "end_cut")]
    ang = dev[2] * shape
    scale = np.exp(dev[3] * shape)
    per = np.stack(
        [
            np.clip((dev[0] + cut0) * cursive, 0.0, _MAX_CUT),  # 0, 1: start and end cuts
            1 - np.clip((dev[1] + cut1) * cursive, 0.0, _MAX_CUT),
            np.cos(ang) * scale,  # 2, 3: rotation and length change about the stroke centre
            np.sin(ang) * scale,
            dev[4] * shape,  # 4, 5: shift
            dev[5] * shape,
            dev[6] * shape,  # 6: bowing, sideways, most in the stroke's middle
            un[9] * 0.3,  # 7: extra pressure at the start
            un[10] * 0.4,  # 8: taper at the end
            np.exp(zn * 0.12),  # 9: pen pressure of the stroke
        ],
        axis=1,
    )[sid]  # (M, 10)
    keep, p = place_strokes(template, per, t)
    # components: the radical (radStrokes) moved and resized against the rest; without radical
    # data, the strokes after a split point (often the next component) move together
    moved = None
    if template.radical is not None and gu[1] < 0.8:
        moved = template.radical
    elif n >= 3 and gu[1] < 0.6:
        moved = sid >= 1 + int(gu[2] * (n - 1))
    if moved is not None:
        ls, dx, dy = stats.deviations("radical", gu[4:7]) * (_SHAPE_SHARE * (0.5 + gu[3]))
        part = p[moved]
        centre = part.sum(axis=0) / max(len(part), 1)
        p[moved] = (part - centre) * np.exp(ls) + centre + (dx, dy)
    # pressure: heavier at the start, tapering at the end, with a slow swing
    w = (1.0 + per[:, 7] * (1 - t) - per[:, 8] * t * t) * per[:, 9]
    w = np.clip(w + 0.1 * np.sin(2 * np.pi * (0.5 + gu[7]) * t), 0.5, 1.3)
    p = _smooth(p, template.starts, int(1 + 2.5 * cursive))
    # global: slant (verticals), rise (horizontals), aspect, as fitted, with this writer's habit
    # strength, then an elastic bend of the whole character
    a = stats.char_shape(gu[12:15], 0.5 + cursive, gu[8:11])
    p = (p - 0.5) @ a.T + 0.5
    freq = g.reshape(2, 2) * 1.6  # two plane waves, one per axis
    p += (gu[11] * 0.03) * np.sin(2 * np.pi * (p @ freq.T) + gu[15:17] * 2 * np.pi)
    # split back into strokes, joining some into cursive ligatures when the pen would not lift
    rate_scale = 2.0 * cursive

    # joined where the draw falls under the writer's join rate for the gap (times rate_scale)
    def joins(gap: np.ndarray) -> np.ndarray:
        rate = stats.join_rate(gap) * rate_scale
        if stroke_habits is not None:
            rate = rate * stroke_habits.join_scale(gap, stats)
        return un[7, 1:] < np.minimum(rate, _MAX_JOIN)

    return join_strokes(p, w, template.stroke, keep, joins, un[8])


def join_strokes(
    p: np.ndarray,
    w: np.ndarray,
    sid: np.ndarray,
    keep: np.ndarray,
    joins: Callable[[np.ndarray], np.ndarray],
    u_bend: np.ndarray,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Perturbed points (M, 2) and pen widths (M,) -> polylines and their widths: strokes cut
    to their `keep` points, and joined to the stroke before (a curved bridge, no pen lift) where
    `joins(gap)` says so; `gap` (n - 1,) is each stroke's start to the previous one's end."""
    n = len(u_bend)
    counts = np.bincount(sid[keep], minlength=n)
    keep |= (counts < 2)[sid]  # a stroke shortened away is kept whole
    kept = np.flatnonzero(keep)
    ksid = sid[kept]
    bounds = np.searchsorted(ksid, np.arange(n + 1))  # first kept point of each stroke, then end
    first, last = kept[bounds[:-1]], kept[bounds[1:] - 1]
    gap = np.abs(p[first[1:]] - p[last[:-1]]).sum(axis=1)  # stroke i-1's end to stroke i's start
    joined = np.concatenate([[False], joins(gap)])
    j = np.flatnonzero(joined)
    bridges = _bridges(p[last[j - 1]], p[first[j]], (u_bend[j] - 0.5) * 0.7)  # (J, B, 2)
    points = np.concatenate([bridges.reshape(-1, 2), p[kept]])
    weights = np.concatenate([np.full(bridges.shape[0] * bridges.shape[1], 0.6), w[kept]])
    # order: stroke 0, (bridge 1), stroke 1, (bridge 2), ... ; a stable sort keeps point order
    key = np.concatenate([np.repeat(2 * j, bridges.shape[1]), 2 * ksid + 1])
    order = np.argsort(key, kind="stable")
    points, weights, key = points[order], weights[order], key[order]
    # a new polyline (pen lift) starts at every stroke not joined to the one before
    cuts = np.searchsorted(key, 2 * np.flatnonzero(~joined)[1:])
    edges = [0, *cuts.tolist(), len(points)]  # slicing: np.split costs ~40 us in Python loops
    spans = list(zip(edges[:-1], edges[1:], strict=True))
    return [points[a:b] for a, b in spans], [weights[a:b] for a, b in spans]


def render_stroke_sample(
    template: StrokeTemplate,
    rng: np.random.Generator,
    scan: bool | None = None,
    perturb: Callable[[StrokeTemplate, np.random.Generator], tuple[list, list]] | None = None,
    scan_ink: bool = True,
) -> np.ndarray:
    """Perturbed medians inked as canvas input (40%) or as a scanned pen sample (60%);
    `scan` True / False forces one of the two. `perturb` (default `perturb_strokes`) and
    `scan_ink` (False: the plain ink before scans were measured) exist for ablations."""
    strokes, pressure = (perturb or perturb_strokes)(template, rng)
    canvas_ink = rng.random() < 0.4
    if not scan and (scan is False or canvas_ink):  # mouse / stylus: one thin uniform pen
        return render_strokes(strokes, pen_width=rng.uniform(0.022, 0.05), canvas=CANVAS)
    if not scan_ink:  # the ink as it was: saturated half of the time, no texture, no smears
        levels = rng.integers(150, 256, size=len(strokes)) if rng.random() < 0.5 else None
        pen_width = rng.uniform(0.024, 0.046)
        pressure = pressure if rng.random() < 0.5 else None
        ink = render_strokes(
            strokes, pen_width, CANVAS, widths=pressure, levels=levels, antialias=False
        )
        return scan_finish(ink, rng, blur=True)
    # ballpoint on paper, set so that stroke widths and ink levels fall in the range of real
    # scans (python -m data_tools.measure_ink: width 4.7-8.6% of the box, 10-90% quantiles;
    # ink levels 39-218): a steady ink level a little below saturation, varying per stroke
    base = rng.uniform(165.0, 240.0)
    levels = np.clip(base + rng.normal(0.0, 12.0, len(strokes)), 60, 255).astype(int)
    pen_width = rng.uniform(0.020, 0.040)
    pressure = pressure if rng.random() < 0.5 else None  # else a steady ballpoint
    strokes, pressure, levels = _smears(strokes, pressure, levels, rng)
    # no anti-aliasing: the scan blur that always follows softens the edges (and it is 3x faster)
    ink = render_strokes(
        strokes, pen_width, CANVAS, widths=pressure, levels=levels, antialias=False
    )
    return scan_finish(ink, rng, blur=True, ballpoint=True)


def _smears(
    strokes: list[np.ndarray],
    pressure: list[np.ndarray] | None,
    levels: np.ndarray,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray] | None, list[int]]:
    # The light smear at a stroke's end: the pen drags on a little as it lifts. A faint, thin
    # tail along the last segment's direction, on about a quarter of the strokes.
    pick = np.flatnonzero(rng.random(len(strokes)) < 0.25)
    strokes, levels = list(strokes), [int(v) for v in levels]
    pressure = list(pressure) if pressure is not None else None
    for i in pick.tolist():
        s = strokes[i]
        if len(s) < 2:
            continue
        d = s[-1] - s[-2]
        norm = float(np.hypot(*d))
        if norm <= 0:
            continue
        tail = s[-1] + np.outer(np.linspace(0.0, 1.0, 4), d / norm * rng.uniform(0.02, 0.05))
        strokes.append(tail)
        levels.append(int(levels[i] * rng.uniform(0.3, 0.5)))
        if pressure is not None:
            pressure.append(np.linspace(0.7, 0.4, 4))
    return strokes, pressure, levels


# ----- scan look ------------------------------------------------------------------------------


def scan_finish(
    ink: np.ndarray, rng: np.random.Generator, blur: bool | None = None, ballpoint: bool = False
) -> np.ndarray:
    """Soft grey edges, uneven ink and sensor noise of a scanned pen sample.

    `blur` True always blurs (for aliased drawings), None blurs 80% of the time. `ballpoint`
    adds, half of the time, the ball's texture: single pixels where the ball laid down less
    ink, softened by the blur into a grainy stroke.
    """
    if ballpoint and rng.random() < 0.5:
        skips = rng.random(ink.shape, dtype=np.float32) < rng.uniform(0.1, 0.35)
        ink = np.where(skips, ink * np.float32(rng.uniform(0.35, 0.75)), ink).astype(np.uint8)
    if blur or (blur is None and rng.random() < 0.8):
        ink = cv2.GaussianBlur(ink, (0, 0), rng.uniform(0.45, 0.9))
    if rng.random() < 0.5:  # ink density varies smoothly over the character
        tone = cv2.resize(rng.uniform(0.55, 1.0, (3, 3)).astype(np.float32), (CANVAS, CANVAS))
        ink = (ink * tone).astype(np.uint8)
    if rng.random() < 0.4:  # sensor grain on the ink, 2 px grains (a quarter of the draws)
        half = rng.standard_normal((CANVAS // 2, CANVAS // 2), dtype=np.float32) * rng.uniform(
            3, 12
        )
        noise = cv2.resize(half, (CANVAS, CANVAS), interpolation=cv2.INTER_NEAREST)
        ink = np.clip(ink + noise * (ink > 0), 0, 255).astype(np.uint8)
    return ink
