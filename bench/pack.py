"""Pack throughput: raw `.gnt` parsing vs the full pack (parse + normalise + compress + write).

Generates a CASIA-format set of >= 100,000 records (random pen strokes on white, sizes like real
HWDB bitmaps), then measures in one run: raw parse rate, full pack rate with N workers, their
ratio, and DataLoader read rate from the packed LMDB.

    python bench/pack.py [--records 100000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from data_tools.pack import PackOptions, pack
from hccr.casia import iter_gnt, write_gnt
from hccr.charset import Charset
from hccr.dataset import LmdbDataset
from hccr.preprocess import NormConfig


def random_bitmaps(n: int, seed: int) -> list[np.ndarray]:
    """A few distinct scribbles, reused: the bench measures I/O and normalisation, not drawing."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = rng.integers(50, 110, size=2)
        img = np.full((h, w), 255, np.uint8)
        for _ in range(rng.integers(3, 12)):
            p = rng.integers(0, [w, h], size=(rng.integers(2, 5), 2)).astype(np.int32)
            cv2.polylines(
                img, [p], False, int(rng.integers(0, 120)), int(rng.integers(2, 5)), cv2.LINE_AA
            )
        out.append(img)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loader-workers", type=int, default=2)
    args = parser.parse_args()

    charset = Charset.gb1()
    tmp = Path(tempfile.mkdtemp(prefix="hccr-bench-pack-"))
    try:
        bitmaps = random_bitmaps(512, seed=0)
        per_file = args.records // args.files
        paths = []
        for f in range(args.files):
            path = tmp / f"{1001 + f}-c.gnt"
            write_gnt(
                path,
                (
                    (charset.char((f * per_file + i) % len(charset)), bitmaps[i % 512])
                    for i in range(per_file)
                ),
            )
            paths.append(path)
        n = per_file * args.files
        size_mb = sum(p.stat().st_size for p in paths) / 1e6

        t = time.perf_counter()
        parsed = sum(1 for p in paths for _ in iter_gnt(p))
        raw_s = time.perf_counter() - t
        assert parsed == n

        out = tmp / "bench.lmdb"
        options = PackOptions(NormConfig(), charset)
        t = time.perf_counter()
        meta = pack(paths, out, options, workers=args.workers, progress=False)
        pack_s = time.perf_counter() - t
        assert meta["num_samples"] == n

        ds = LmdbDataset(out)
        loader = DataLoader(ds, batch_size=256, num_workers=args.loader_workers, shuffle=True)
        t = time.perf_counter()
        seen = sum(len(labels) for _, labels in loader)
        load_s = time.perf_counter() - t
        assert seen == n
        db_mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6

        print(
            f"records: {n:,} in {args.files} .gnt files ({size_mb:.0f} MB); cores: {os.cpu_count()}; torch threads {torch.get_num_threads()}"
        )
        print("| measure | samples/s | time (s) |")
        print("| --- | ---: | ---: |")
        print(f"| raw .gnt parse (1 process) | {n / raw_s:,.0f} | {raw_s:.2f} |")
        print(
            f"| full pack ({args.workers} workers: parse + normalise + zlib + LMDB write) | {n / pack_s:,.0f} | {pack_s:.2f} |"
        )
        print(
            f"| DataLoader from LMDB ({args.loader_workers} workers, batch 256, no augmentation) | {n / load_s:,.0f} | {load_s:.2f} |"
        )
        print(f"pack / raw parse ratio: {raw_s / pack_s:.3f}")
        print(f"LMDB size: {db_mb:.1f} MB ({db_mb * 1e6 / n:,.0f} bytes/sample; raw 64x64 = 4,096)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
