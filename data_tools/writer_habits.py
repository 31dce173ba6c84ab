"""Stroke-level habits of one synthetic writer, kept over all of its characters.

A real hand departs from the model strokes the same way each time it writes the same kind of
stroke: its horizontals run long, its left-falling strokes tilt and bow one way, it joins
strokes across short gaps more than across long ones. `perturb_strokes` (styles.py) draws each
stroke's departures afresh; given a `StrokeHabits`, a share (`SHARE` of the variance) of every
stroke's start and end cut, rotation, length change and bowing is instead its writer's bias for
that kind of stroke, and the join rate is scaled per gap by the writer's own factors.

The kinds come from the medians' geometry alone (chord angle and length, path against chord),
and the biases from the fitted per-stroke spreads of data_tools/writer_stats.json: nothing here
is fitted on real writers. Used by bench/adaptation_synth.py's `stroke-habits` writers; the
generator's samples (no habits) never go through this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_tools.writer_stats import WriterStats, load_writer_stats

KINDS = ("horizontal", "vertical", "left-falling", "right-falling", "short", "turning")
# Which of the per-stroke departures (WriterStats.GROUPS["stroke"] order: start_cut, end_cut,
# angle, log_length, shift_x, shift_y, bow) a writer biases per kind; a stroke's shift is where
# it sits in one character, not a habit of the hand.
BIASED = np.array([True, True, True, True, False, False, True])
SHARE = 0.5  # of a biased departure's variance that is the writer's habit, the rest per stroke
_SHORT = 0.18  # chord (unit box) under which a straight stroke is a dot or a short tick
_TURNING = 1.25  # path / chord above which a stroke turns or hooks (a fold, a hook, a curve)
_JOIN_RANGE = 1.0  # the join factor per gap bin: 2 ** uniform(-1, 1)


def stroke_kinds(points: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Points (M, 2) of a character's strokes, stroke i at points[starts[i]:starts[i + 1]]
    -> (n,) index into `KINDS` of each stroke."""
    first, last = starts[:-1], starts[1:] - 1
    chord = points[last] - points[first]
    length = np.hypot(chord[:, 0], chord[:, 1])
    seg = np.concatenate([[0.0], np.hypot(*np.diff(points, axis=0).T)])
    seg[first] = 0.0  # the step from the previous stroke's end is no part of this one
    path = np.add.reduceat(seg, first)
    angle = np.degrees(np.arctan2(chord[:, 1], chord[:, 0]))  # y down: 90 is straight down
    kind = np.select(
        [
            (angle >= -60) & (angle < 25),
            (angle >= 25) & (angle < 70),
            (angle >= 70) & (angle < 112),
        ],
        [0, 3, 1],
        2,  # left-falling: down and to the left (and the rare strokes written up or leftwards)
    )
    kind = np.where(length < _SHORT, 4, kind)
    return np.where(path > _TURNING * np.maximum(length, 1e-6), 5, kind)


@dataclass(frozen=True)
class StrokeHabits:
    """One writer's stroke-level habits."""

    bias: np.ndarray  # (len(KINDS), 7) departures from the fitted medians per kind (0: unbiased)
    join: np.ndarray  # (bins,) join-rate factor at each gap bin of the fitted join table

    @classmethod
    def draw(cls, rng: np.random.Generator, stats: WriterStats | None = None) -> StrokeHabits:
        """A writer: each kind's bias drawn from the fitted per-stroke spreads, and a join
        factor 2 ** uniform(-1, 1) for each gap bin."""
        stats = stats or load_writer_stats()
        bias = stats.deviations("stroke", rng.random((len(BIASED), len(KINDS)))).T * BIASED
        join = 2.0 ** rng.uniform(-_JOIN_RANGE, _JOIN_RANGE, len(stats.join_gaps))
        return cls(bias, join)

    def departures(self, points: np.ndarray, starts: np.ndarray, dev: np.ndarray) -> np.ndarray:
        """A character's per-stroke departures `dev` (7, n) drawn afresh -> the writer's: the
        biased rows mix its bias for each stroke's kind with the fresh draw, keeping the spread
        (sqrt(SHARE) bias + sqrt(1 - SHARE) draw)."""
        habit = self.bias[stroke_kinds(points, starts)].T  # (7, n)
        mixed = np.sqrt(SHARE) * habit + np.sqrt(1.0 - SHARE) * dev
        return np.where(BIASED[:, None], mixed, dev)

    def join_scale(self, gap: np.ndarray, stats: WriterStats | None = None) -> np.ndarray:
        """The writer's factor on the join rate at each gap (L1, unit box)."""
        stats = stats or load_writer_stats()
        return np.interp(gap, stats.join_gaps, self.join)
