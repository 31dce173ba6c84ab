"""The fitted writer statistics (data_tools/writer_stats.json), sampled by inverse CDF.

The file holds quantiles of how a real writer departs from the stroke medians, per stroke
(start and end cuts, rotation, length, shift, bowing), per character (slant, rise, aspect), for
the radical against the rest, and join rates by gap; `data_tools/fit_writer_stats.py` rebuilds
it from a `.pot` file. `perturb_strokes` (styles.py) draws from these distributions.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

WRITER_STATS_PATH = Path(__file__).resolve().parent / "writer_stats.json"


class WriterStatsError(ValueError):
    """The statistics file is missing a distribution or is malformed."""


class WriterStats:
    """Quantile tables; `draw(group, key, u)` maps uniforms in [0, 1] to values."""

    GROUPS = {
        "stroke": ("start_cut", "end_cut", "angle", "log_length", "shift_x", "shift_y", "bow"),
        "char": ("slant", "rise", "log_aspect"),
        "radical": ("log_scale", "shift_x", "shift_y"),
    }

    def __init__(self, data: dict, path: str | Path = "<dict>") -> None:
        try:
            self.probs = np.asarray(data["quantiles"], np.float64)
            self.tables = {
                (g, k): np.asarray(data[g][k], np.float64)
                for g, keys in self.GROUPS.items()
                for k in keys
            }
            join = data["join"]
            edges = np.asarray(join["gap_edges"], np.float64)
            self.join_gaps = (edges[:-1] + edges[1:]) / 2  # bin centres
            self.join_rates = np.asarray(join["rate"], np.float64)
            self.order_rate = float(data["order"]["rate"])
        except (KeyError, TypeError) as e:
            raise WriterStatsError(f"{path}: missing or malformed entry {e}") from None
        bad = [k for k, t in self.tables.items() if t.shape != self.probs.shape]
        if bad or np.any(np.diff(self.probs) <= 0):
            raise WriterStatsError(f"{path}: quantile tables of the wrong length: {bad}")
        if any(np.any(np.diff(t) < 0) for t in self.tables.values()):
            raise WriterStatsError(f"{path}: quantiles are not sorted")
        if np.any((self.join_rates < 0) | (self.join_rates > 1)):
            raise WriterStatsError(f"{path}: join rates outside [0, 1]")
        self.medians = {k: float(np.interp(0.5, self.probs, t)) for k, t in self.tables.items()}
        # per group: (keys, (K, Q) quantile tables, (K, 1) medians) for `deviations`
        self._stacked = {
            g: (keys, np.stack([self.tables[(g, k)] for k in keys]),
                np.array([[self.medians[(g, k)]] for k in keys]))
            for g, keys in self.GROUPS.items()
        }  # fmt: skip
        self._even = bool(
            np.allclose(self.probs, np.linspace(0.0, 1.0, len(self.probs)), atol=1e-9)
        )
        self._rows = np.arange(max(len(k) for k in self.GROUPS.values()))[:, None]
        self.source = str(data.get("source", ""))

    @classmethod
    def load(cls, path: str | Path = WRITER_STATS_PATH) -> WriterStats:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise WriterStatsError(f"{path}: cannot read writer statistics ({e})") from None
        return cls(data, path)

    def draw(self, group: str, key: str, u: np.ndarray | float) -> np.ndarray:
        """Inverse CDF: the values at probabilities `u` (any shape)."""
        return np.interp(u, self.probs, self.tables[(group, key)])

    def deviations(self, group: str, u: np.ndarray) -> np.ndarray:
        """All of a group's distributions at once (keys in GROUPS order): `u` (K, n) uniforms ->
        (K, n) departures from each distribution's median. One pass instead of K np.interp."""
        _, tables, medians = self._stacked[group]
        u = np.asarray(u, np.float64)
        flat = u.reshape(len(tables), -1)
        last = len(self.probs) - 2
        if self._even:  # evenly spaced probabilities: the bin is arithmetic (~10x faster)
            x = flat * (last + 1)
            i = np.minimum(x.astype(np.intp), last)
        else:
            i = np.searchsorted(self.probs, flat, side="right") - 1
            i = np.minimum(np.maximum(i, 0), last)
            x = i + (flat - self.probs[i]) / (self.probs[i + 1] - self.probs[i])
        w = np.minimum(np.maximum(x - i, 0.0), 1.0)
        rows = self._rows[: len(tables)]
        values = tables[rows, i] * (1 - w) + tables[rows, i + 1] * w
        return (values - medians).reshape(u.shape)

    def median_values(self, group: str) -> np.ndarray:
        """(K,) the medians of a group's distributions, in GROUPS order."""
        return self._stacked[group][2][:, 0]

    def char_shape(self, u: np.ndarray, spread: float, u_habit: np.ndarray) -> np.ndarray:
        """(2, 2) slant, rise and aspect map of a whole character: the "char" departures at the
        uniforms `u` (3,) times `spread`, plus this writer's habit, -0.5 to 1.5 times the fitted
        medians (`u_habit` (3,) uniforms)."""
        habit = -0.5 + 2.0 * np.asarray(u_habit)
        slant, rise, log_aspect = (
            self.deviations("char", u) * spread + self.median_values("char") * habit
        )
        aspect = np.exp(log_aspect)
        return np.array([[aspect, slant], [-rise, 1.0 / aspect]])

    def range(self, group: str, key: str) -> tuple[float, float]:
        t = self.tables[(group, key)]
        return float(t[0]), float(t[-1])

    def join_rate(self, gap: np.ndarray) -> np.ndarray:
        """How often this writer joins two consecutive strokes `gap` (L1, unit box) apart."""
        return np.interp(gap, self.join_gaps, self.join_rates)


@lru_cache(maxsize=1)
def load_writer_stats() -> WriterStats:
    """The shipped statistics, loaded once per process."""
    return WriterStats.load()
