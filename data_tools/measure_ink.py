"""Ink statistics of scans vs. the generator: stroke width and grey levels (histogram quantiles).

    python -m data_tools.measure_ink ../shared/data/hwdb-train16 ../shared/data/hwdb-onewriter101

Measures, per image: the stroke width as a fraction of the ink's bounding box (twice the median
distance-to-background along the ink's skeleton) and the ink level of every ink pixel (255 minus
the grey, pixels darker than the paper by > INK_THRESHOLD). The same is measured on `hccr-data synth`'s
scan-inked samples (strokes and font styles, on their canvas before normalisation). Statistics
only: nothing learns from the scans; `styles.scan_finish` and the stroke style's pen width are
set so that the synthetic quantiles fall in the scans' range.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from hccr.preprocess import INK_THRESHOLD

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def ink_stats(ink: np.ndarray) -> tuple[float, np.ndarray] | None:
    """(stroke width / box side, ink levels of the ink pixels) of an ink-bright map."""
    from skimage.morphology import skeletonize

    mask = ink > INK_THRESHOLD
    if mask.sum() < 10:
        return None
    ys, xs = np.nonzero(mask)
    side = max(np.ptp(ys), np.ptp(xs)) + 1
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    ridge = dist[skeletonize(mask)]
    return 2.0 * float(np.median(ridge)) / side, ink[mask]


def summarise(items: list[tuple[float, np.ndarray]]) -> dict[str, list[float]]:
    widths = np.array([w for w, _ in items])
    levels = np.concatenate([v for _, v in items]).astype(np.float64)
    q = (0.1, 0.25, 0.5, 0.75, 0.9)
    return {
        "n": len(items),
        "width": [round(float(x), 4) for x in np.quantile(widths, q)],
        "level": [round(float(x), 1) for x in np.quantile(levels, q)],
    }


def scans(folder: Path, limit: int) -> list[tuple[float, np.ndarray]]:
    from PIL import Image

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    step = max(1, len(paths) // limit)
    out = []
    for p in paths[::step][:limit]:
        s = ink_stats(255 - np.asarray(Image.open(p).convert("L")))
        if s is not None:
            out.append(s)
    return out


def synthetic(style: str, count: int, seed: int = 0) -> list[tuple[float, np.ndarray]]:
    from data_tools import styles
    from data_tools.fonts import discover_fonts, fonts_for_split
    from data_tools.sampler import SampleMaker, SynthConfig
    from hccr.charset import Charset

    faces = fonts_for_split(discover_fonts(), "train") if style != "strokes" else []
    maker = SampleMaker(faces, SynthConfig(styles={style: 1.0}))
    gb1 = Charset.gb1()
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        ch = gb1.char(int(rng.integers(len(gb1))))
        if style == "strokes":
            ink = styles.render_stroke_sample(maker.stroke_template(ch), rng, scan=True)
        else:
            ink = maker.make(ch, rng)[0]
        s = ink_stats(ink)
        if s is not None:
            out.append(s)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="*", help="folders of scanned characters")
    parser.add_argument("--limit", type=int, default=400, help="images per folder / style")
    args = parser.parse_args(argv)
    print("quantiles 10/25/50/75/90%: stroke width (fraction of the box), ink level (0-255)")
    for folder in args.folders:
        print(f"scan {folder.name}: {summarise(scans(folder, args.limit))}")
    for style in ("strokes", "font"):
        print(f"synth {style} (scan ink): {summarise(synthetic(style, args.limit))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
