"""LMDB value codec: the system zlib vs zlib-ng (what `hccr.lmdb_format` uses), in one run.

Compresses and decompresses normalised 64x64 samples (the bench/pack.py scribbles, through
`hccr.preprocess.normalize`) and prints microseconds a sample, bytes a sample and the ratios.
Every stream is checked to decode with the standard `zlib` module.

    python bench/codec.py [--samples 2000] [--level 1]
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from zlib_ng import zlib_ng

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pack import random_bitmaps  # noqa: E402

from hccr.preprocess import NormConfig, ink_from_white_background, normalize  # noqa: E402


def best_us(fn: Callable[[bytes], bytes], items: list[bytes], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - t)
    return best / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--level", type=int, default=1)
    args = parser.parse_args()

    cfg = NormConfig()
    raw = [
        normalize(ink_from_white_background(b), cfg).tobytes()
        for b in random_bitmaps(args.samples, seed=0)
    ]
    codecs = {
        "zlib (system)": (zlib.compress, zlib.decompress),
        "zlib-ng": (zlib_ng.compress, zlib_ng.decompress),
    }
    rows = {}
    for name, (compress, decompress) in codecs.items():
        streams = [compress(r, args.level) for r in raw]
        assert all(zlib.decompress(s) == r for s, r in zip(streams, raw, strict=True))
        rows[name] = (
            best_us(lambda r, c=compress: c(r, args.level), raw),
            best_us(decompress, streams),
            sum(map(len, streams)) / len(streams),
        )
    print(f"{len(raw):,} normalised 64x64 samples, level {args.level}")
    print("| codec | compress (us) | decompress (us) | bytes / sample |")
    print("| --- | ---: | ---: | ---: |")
    for name, (c, d, size) in rows.items():
        print(f"| {name} | {c:.1f} | {d:.1f} | {size:,.0f} |")
    (zc, zd, zs), (nc, nd, ns) = rows["zlib (system)"], rows["zlib-ng"]
    print(
        f"zlib-ng vs zlib: compress {zc / nc:.2f}x faster, decompress {zd / nd:.2f}x faster, "
        f"size {ns / zs:.3f}x"
    )


if __name__ == "__main__":
    main()
