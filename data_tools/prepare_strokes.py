"""Builds data_tools/stroke_medians.npz from the npm package `hanzi-writer-data`.

A data-preparation step, run by hand (never at recognition or generation time):

    cd /tmp && npm pack hanzi-writer-data && mkdir -p hwd && tar xzf hanzi-writer-data-*.tgz -C hwd
    python -m data_tools.prepare_strokes /tmp/hwd/package -o data_tools/stroke_medians.npz

The package holds one JSON file per character with the stroke `medians` of Make Me a Hanzi
(https://github.com/skishore/makemeahanzi, derived from Arphic fonts; Arphic Public License,
see data_tools/STROKE_DATA_LICENSE.txt), and `radStrokes`: which strokes form the character's
radical (stored as one 0/1 flag per stroke, so the generator can move and resize the radical
against the rest of the character). Medians live in a 1024-unit box with y pointing up,
drawn through `translate(0, 900) scale(1, -1)`; we store image coordinates (y down),
quantised to 4 units (one byte per coordinate), which keeps every character, about 9,500 of
them, in well under a megabyte.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

UNITS_PER_STEP = 4  # 1024 / 4 = 256 levels: one byte per coordinate, error <= 0.2% of the box


def read_package(
    package_dir: Path,
) -> tuple[dict[str, list[list[list[int]]]], dict[str, list[int]]]:
    """Reads `<char>.json` files of hanzi-writer-data into char -> medians (x, y up) and
    char -> radical stroke indices (for the characters that have them)."""
    medians: dict[str, list[list[list[int]]]] = {}
    radicals: dict[str, list[int]] = {}
    for path in sorted(package_dir.glob("*.json")):
        ch = path.stem
        if len(ch) != 1:  # package.json and friends
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("medians"):
            medians[ch] = data["medians"]
            if data.get("radStrokes"):
                radicals[ch] = data["radStrokes"]
    return medians, radicals


def pack_medians(
    medians: dict[str, list[list[list[int]]]], radicals: dict[str, list[int]] | None = None
) -> dict[str, np.ndarray]:
    """Flattens medians into arrays: code points, strokes per char, points per stroke, points,
    and a radical flag per stroke."""
    chars = sorted(medians)
    radicals = radicals or {}
    n_strokes, n_points, points, flags = [], [], [], []
    for ch in chars:
        strokes = medians[ch]
        n_strokes.append(len(strokes))
        rad = set(radicals.get(ch, ()))
        flags += [i in rad for i in range(len(strokes))]
        for stroke in strokes:
            xy = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
            xy[:, 1] = 900.0 - xy[:, 1]  # y up (font units) -> y down (image)
            q = np.clip(np.rint(xy / UNITS_PER_STEP), 0, 255).astype(np.uint8)
            n_points.append(len(q))
            points.append(q)
    return {
        "codepoints": np.array([ord(c) for c in chars], dtype=np.uint32),
        "num_strokes": np.array(n_strokes, dtype=np.uint8),
        "num_points": np.array(n_points, dtype=np.uint16),
        "points": np.concatenate(points).astype(np.uint8),
        "radical": np.array(flags, dtype=np.uint8),
        "units_per_step": np.array(UNITS_PER_STEP, dtype=np.int32),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="unpacked hanzi-writer-data folder (package/)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .npz")
    args = parser.parse_args(argv)
    medians, radicals = read_package(args.package)
    if not medians:
        print(f"{args.package}: no <char>.json files with medians", file=sys.stderr)
        return 1
    np.savez_compressed(args.output, **pack_medians(medians, radicals))
    print(
        f"{args.output}: {len(medians)} characters ({len(radicals)} with radical strokes), "
        f"{args.output.stat().st_size:,} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
