"""Stroke medians of Make Me a Hanzi, vendored in data_tools/stroke_medians.npz.

Each character is a list of strokes in writing order; each stroke is the polyline along the
middle of the brush stroke, (N, 2) float x, y in [0, 1] image coordinates (y down) of the
1024-unit font box. The file is built by data_tools/prepare_strokes.py (Arphic Public
License, see data_tools/STROKE_DATA_LICENSE.txt); nothing here touches the network.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

STROKE_MEDIANS_PATH = Path(__file__).resolve().parent / "stroke_medians.npz"


class StrokeMedians:
    """Char -> list of (N, 2) float32 median polylines in the unit box, decoded on demand."""

    def __init__(self, path: str | Path = STROKE_MEDIANS_PATH) -> None:
        path = Path(path)
        with np.load(path) as z:
            codepoints = z["codepoints"]
            num_strokes = z["num_strokes"].astype(np.int64)
            num_points = z["num_points"].astype(np.int64)
            self._points = z["points"].astype(np.float32) * (float(z["units_per_step"]) / 1024.0)
            # 1 for a stroke of the character's radical (hanzi-writer-data `radStrokes`)
            self._radical = z["radical"].astype(bool) if "radical" in z.files else None
        self.path = path
        stroke_starts = np.concatenate([[0], np.cumsum(num_strokes)])
        point_starts = np.concatenate([[0], np.cumsum(num_points)])
        # char -> (first point index of each stroke, plus the end)
        self._bounds = {
            chr(int(cp)): point_starts[stroke_starts[i] : stroke_starts[i + 1] + 1]
            for i, cp in enumerate(codepoints)
        }
        self._strokes = {
            chr(int(cp)): (int(stroke_starts[i]), int(stroke_starts[i + 1]))
            for i, cp in enumerate(codepoints)
        }

    def __contains__(self, ch: object) -> bool:
        return ch in self._bounds

    def __len__(self) -> int:
        return len(self._bounds)

    def get(self, ch: str) -> list[np.ndarray] | None:
        """The strokes of `ch` (copies, safe to modify), or None if it has no stroke data."""
        bounds = self._bounds.get(ch)
        if bounds is None:
            return None
        return [self._points[a:b].copy() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def radicals(self, ch: str) -> np.ndarray | None:
        """(n,) bool: which strokes of `ch` form its radical; None when unknown or when the
        radical is the whole character (nothing to move against it)."""
        span = self._strokes.get(ch)
        if span is None or self._radical is None:
            return None
        flags = self._radical[span[0] : span[1]]
        return flags.copy() if 0 < flags.sum() < len(flags) else None


@lru_cache(maxsize=1)
def load_medians() -> StrokeMedians:
    """The vendored medians, loaded once per process."""
    return StrokeMedians()
