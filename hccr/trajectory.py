"""Pen trajectories as model input: the one place where points become direction-decomposed maps.

Beside `hccr.preprocess` (pixels -> the image model's input), and sharing its geometry: the
points are moment-normalised on themselves (centroid to the centre, 4 standard deviations of the
ink fill the box, as `NormConfig`'s "moment" does on pixels; each segment weighs its length,
as a uniformly resampled pen trace would), resampled at equal steps along each stroke, then
drawn at the model size S with a round pen into
  channel 0      the ink (what the image model sees for the same strokes),
  channels 1..8  the pen direction, each segment split between the two nearest of 8 unit
                 directions by the parallelogram rule (Bai & Huo, "A study on the use of 8-directional
                 features for online handwritten Chinese character recognition", ICDAR 2005;
                 Zhang, Bengio & Liu, Pattern Recognition 61, 2017, arXiv:1606.05763,
                 "direction-decomposed feature maps"),
  channel 9      the pen-up moves between strokes (optional, `pen_up`).

`normalize_points` and `draw` are separate so that a training LMDB can store the (small)
normalised points and draw them, after augmentation, in the DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from hccr.preprocess import DEFAULT_IMAGE_SIZE, EmptyImageError, NormConfig
from hccr.trajectory_kernels import draw_maps, resample_flat

INPUT_KINDS = ("image", "strokes")
NUM_DIRECTIONS = 8
MAX_STROKES = 1024  # a character has at most ~36; more is not handwriting
MAX_POINTS = 65_536  # raw points in all strokes together (a .pot character has a few hundred)
MAX_COORDINATE = 1e7  # beyond this a coordinate is garbage, not a tablet or a screen
MAX_RESAMPLED = 4096  # points drawn at most: a longer trace is resampled at a coarser step


class EmptyDrawingError(EmptyImageError):
    """Strokes with no points: nothing to recognise (an `EmptyImageError`, so callers that
    answer "empty" for an image answer it for a drawing too)."""


@dataclass(frozen=True)
class TrajectoryConfig:
    """How pen points are mapped into the online model's (C, S, S) input."""

    size: int = DEFAULT_IMAGE_SIZE  # side S of the maps
    margin: int = 4  # blank pixels kept on each side at size 64; scaled with `size`
    moment_span: float = 4.0  # box side = span * std of the ink along each axis (as NormConfig)
    # resampling step along each stroke, in pixels at size 64: directions over 2 px are steady,
    # and half the segments of 1 px draw the maps ~1.7x faster
    step: float = 2.0
    # pen diameter in pixels at size 64: the ink channel then correlates best (~0.91) with the
    # image normalisation of the demo panel's inked strokes
    pen_width: float = 3.0
    pen_up: bool = False  # a 10th channel: the pen's moves between strokes

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 512:
            raise ValueError(f"map size {self.size} out of range 8..512")
        if not (self.step > 0 and self.pen_width > 0 and self.moment_span > 0):
            raise ValueError("step, pen_width and moment_span must be > 0")

    @property
    def channels(self) -> int:
        return 1 + NUM_DIRECTIONS + int(self.pen_up)

    def image_norm(self) -> NormConfig:
        """The image normalisation whose output the ink channel imitates (same size and box)."""
        return NormConfig(size=self.size, margin=self.margin, moment_span=self.moment_span)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrajectoryConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown trajectory settings: {', '.join(sorted(unknown))}")
        return cls(**d)


Strokes = Sequence[Any]  # [[(x, y), ...], ...]: lists of points, or (N, 2) arrays


def check_strokes(strokes: Strokes) -> list[np.ndarray]:
    """Validates and bounds raw strokes -> float64 (N, 2) arrays, empty strokes dropped.

    Raises:
        EmptyDrawingError: no point at all.
        ValueError: one line: not a list of (x, y) points, NaN / infinite or enormous
            coordinates, or more strokes or points than any character has.
    """
    if isinstance(strokes, np.ndarray) and strokes.ndim == 2:
        strokes = [strokes]  # one stroke given as an (N, 2) array
    try:
        count = len(strokes)
    except TypeError:
        raise ValueError(
            "strokes must be a list of strokes, each a list of (x, y) points"
        ) from None
    if count > MAX_STROKES:
        raise ValueError(f"{count} strokes; at most {MAX_STROKES} are accepted")
    out, total = [], 0
    for s in strokes:
        try:
            xy = np.asarray(s, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("each stroke must be a list of (x, y) number pairs") from None
        if xy.size == 0:
            continue
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"each stroke must be (x, y) pairs, got an array of shape {xy.shape}")
        total += len(xy)
        if total > MAX_POINTS:
            raise ValueError(f"over {MAX_POINTS} points; at most {MAX_POINTS} are accepted")
        if not np.isfinite(xy).all():
            raise ValueError("stroke coordinates must be finite numbers (got NaN or infinity)")
        if np.abs(xy).max() > MAX_COORDINATE:
            raise ValueError(f"stroke coordinates beyond +-{MAX_COORDINATE:g}")
        out.append(xy)
    if not out:
        raise EmptyDrawingError("empty drawing: no points")
    return out


def _segment_moments(strokes: list[np.ndarray]) -> tuple[float, float, float, float]:
    """Centroid (x, y) and standard deviations (x, y) of the ink, each segment weighing its
    length (a uniform line density, as a finely resampled trace); points when there is no
    length at all (dots)."""
    a = np.concatenate([s[:-1] for s in strokes if len(s) > 1] or [np.zeros((0, 2))])
    b = np.concatenate([s[1:] for s in strokes if len(s) > 1] or [np.zeros((0, 2))])
    length = np.hypot(*(b - a).T)
    if length.sum() <= 0:
        pts = np.concatenate(strokes)
        return (*pts.mean(axis=0), *pts.std(axis=0))
    w = length / length.sum()
    mid, half = (a + b) / 2, (b - a) / 2
    mean = w @ mid
    # E[p^2] along a segment = mid^2 + half^2 / 3 (uniform on [mid - half, mid + half])
    second = w @ (mid**2 + half**2 / 3)
    std = np.sqrt(np.maximum(second - mean**2, 0.0))
    return float(mean[0]), float(mean[1]), float(std[0]), float(std[1])


def normalize_points(strokes: Strokes, cfg: TrajectoryConfig) -> list[np.ndarray]:
    """Raw strokes (any units, y down) -> float32 points in map pixels (0..S), moment-normalised
    as `hccr.preprocess.normalize` does pixels; not yet resampled (see `draw`).

    Raises:
        EmptyDrawingError / ValueError: see `check_strokes`.
    """
    strokes = check_strokes(strokes)
    pts = np.concatenate(strokes)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    w, h = (hi - lo).tolist()
    S = cfg.size
    margin = cfg.margin * S / 64
    inner = S - 2 * margin
    cx, cy, sx, sy = _segment_moments(strokes)
    extent = max(w, h)
    if extent <= 1e-9 * max(1.0, float(np.abs(pts).max())):  # one dot: put it in the middle
        return [np.full((1, 2), S / 2, np.float32)]
    scale = min(inner / (cfg.moment_span * max(sx, sy, 1e-9)), (S - margin) / extent)
    # as the image path: the centroid to the centre, slid back where ink would leave the box
    cx = lo[0] + _clamp_centre(cx - lo[0], w, scale, S, margin / 2)
    cy = lo[1] + _clamp_centre(cy - lo[1], h, scale, S, margin / 2)
    centre = np.array([cx, cy])
    return [((s - centre) * scale + S / 2).astype(np.float32) for s in strokes]


def _clamp_centre(c: float, extent: float, scale: float, S: int, inset: float) -> float:
    half = (S / 2 - inset) / scale
    lo, hi = half, extent - half
    if lo >= hi:
        return min(max(c, hi), lo)
    return (lo + hi) / 2


def resample(strokes: Sequence[np.ndarray], step: float) -> list[np.ndarray]:
    """Points at equal arc-length steps along each stroke (ends kept): tablet jitter and uneven
    sampling speed then no longer decide the directions. At most `MAX_RESAMPLED` points in
    all: a longer trace gets a longer step."""
    flat, ends = _resampled(strokes, step)
    return np.split(flat, ends[:-1])


def _resampled(strokes: Sequence[np.ndarray], step: float) -> tuple[np.ndarray, np.ndarray]:
    flat = np.ascontiguousarray(np.concatenate(strokes), dtype=np.float64)
    ends = np.cumsum([len(s) for s in strokes]).astype(np.int64)
    return _resample_ends(flat, ends, step)


def _resample_ends(
    flat: np.ndarray, ends: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray]:
    d = flat[1:] - flat[:-1]
    total = float(np.sqrt((d * d).sum(axis=1)).sum())
    # the sum over all consecutive points bounds the strokes' own length from above
    return resample_flat(flat, ends, max(step, total / MAX_RESAMPLED))


def draw(points: Sequence[np.ndarray], cfg: TrajectoryConfig, pen_scale: float = 1.0) -> np.ndarray:
    """Normalised points (`normalize_points`, possibly augmented) -> (C, S, S) uint8 maps.

    `pen_scale` multiplies the pen width (training augmentation). Points are clipped to a band
    around the map first, so that nothing drawn can be far outside it.
    """
    lengths = [len(p) for p in points]
    if not any(lengths):
        raise EmptyDrawingError("empty drawing: no points")
    return draw_flat(np.concatenate(points), np.asarray(lengths), cfg, pen_scale)


def draw_flat(
    flat: np.ndarray, lengths: np.ndarray, cfg: TrajectoryConfig, pen_scale: float = 1.0
) -> np.ndarray:
    """`draw` for points given as one (M, 2) array and the point count of each stroke."""
    S = cfg.size
    scale = S / 64
    lengths = lengths[lengths > 0]
    if not len(lengths):
        raise EmptyDrawingError("empty drawing: no points")
    flat = np.clip(np.asarray(flat, np.float64), -S, 2 * S)
    ends = np.cumsum(lengths).astype(np.int64)
    flat, ends = _resample_ends(flat, ends, cfg.step * scale)
    out = np.zeros((cfg.channels, S, S), np.uint8)
    radius = max(0.25, cfg.pen_width * scale * pen_scale / 2)
    return draw_maps(flat, ends, radius, out, cfg.pen_up)


def prepare_strokes(strokes: Strokes, cfg: TrajectoryConfig) -> np.ndarray:
    """Raw strokes -> the online model's (C, S, S) uint8 input.

    Raises:
        EmptyDrawingError: no points. ValueError: malformed or out-of-bounds strokes.
    """
    return draw(normalize_points(strokes, cfg), cfg)


def strokes_to_ink(strokes: Strokes, side: int = 256) -> np.ndarray:
    """Raw strokes inked on a (side, side) canvas, ink bright, for an image model: fitted into
    the canvas and drawn with a pen of ~1/40 of it (the image normalisation does the rest)."""
    strokes = check_strokes(strokes)
    pts = np.concatenate(strokes)
    lo = pts.min(axis=0)
    extent = float((pts.max(axis=0) - lo).max())
    pen = max(1, side // 40)
    scale = (side - 4 * pen) / extent if extent > 0 else 1.0
    ink = np.zeros((side, side), np.uint8)
    for s in strokes:
        xy = np.round(((s - lo) * scale + 2 * pen) * 16).astype(np.int32)
        if len(xy) == 1 or (xy == xy[0]).all():
            cv2.circle(ink, (int(xy[0, 0]), int(xy[0, 1])), pen * 8, 255, -1, cv2.LINE_AA, 4)
        else:
            cv2.polylines(ink, [xy], False, 255, pen, cv2.LINE_AA, 4)
    return ink


def warm_up() -> None:
    """Loads (the first time on a machine: compiles) the drawing pass; call before forking."""
    prepare_strokes([[(0, 0), (3, 4)], [(1, 1)]], TrajectoryConfig(size=16, pen_up=True))
