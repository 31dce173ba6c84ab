"""Pack throughput: raw `.gnt` parsing vs the full pack (parse + normalise + compress + write).

Generates a CASIA-format set of >= 100,000 records (random pen strokes on white, sizes like real
HWDB bitmaps), then measures in one run: raw parse rate, full pack rate with N workers, their
ratio, and DataLoader read rate from the packed LMDB. Then it times each stage of a pack in one
process (parse, ink map, normalise, zlib encode, LMDB put) on the first file's records, which
bounds the ratio: with every core busy, pack / raw parse <= cores x parse / (sum of stages).

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
import lmdb
import numpy as np
import torch
from torch.utils.data import DataLoader

from data_tools.pack import PackOptions, pack
from hccr.casia import iter_gnt, write_gnt
from hccr.charset import Charset
from hccr.dataset import LmdbDataset
from hccr.lmdb_format import encode_sample
from hccr.preprocess import NormConfig, ink_from_white_background, normalize, warm_up


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


def stage_costs(path: Path, charset: Charset, norm: NormConfig) -> dict[str, float]:
    """Microseconds per record of each pack stage, one process, over the records of `path`."""
    warm_up()
    cv2.setNumThreads(1)  # as in the pack workers
    records = list(iter_gnt(path))
    t0 = time.perf_counter()
    assert sum(1 for _ in iter_gnt(path)) == len(records)  # timed as the raw parse above is
    t1 = time.perf_counter()
    inks = [ink_from_white_background(r.bitmap) for r in records]
    t2 = time.perf_counter()
    images = [normalize(ink, norm) for ink in inks]
    t3 = time.perf_counter()
    values = [
        encode_sample(im, charset.index(r.char), 1) for im, r in zip(images, records, strict=True)
    ]
    t4 = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="hccr-bench-put-"))
    try:
        env = lmdb.open(str(out), map_size=4 * sum(map(len, values)) + (1 << 20))
        t5 = time.perf_counter()
        with env.begin(write=True) as txn:
            for i, v in enumerate(values):
                txn.put(b"%09d" % i, v, append=True)
        t6 = time.perf_counter()
        env.close()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    us = 1e6 / len(records)
    return {
        "parse": (t1 - t0) * us,
        "ink map": (t2 - t1) * us,
        "normalise": (t3 - t2) * us,
        "zlib encode": (t4 - t3) * us,
        "LMDB put": (t6 - t5) * us,
    }


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

        stages = stage_costs(paths[0], charset, options.norm)
        total = sum(stages.values())
        cores = os.cpu_count() or 1
        print(f"\nstages of a pack, one process, {per_file:,} records:")
        print("| stage | us/record | share |")
        print("| --- | ---: | ---: |")
        for name, t in stages.items():
            print(f"| {name} | {t:.1f} | {t / total:.0%} |")
        print(f"| all | {total:.1f} | 100% |")
        print(
            f"bound on pack / raw parse with {cores} cores busy: "
            f"{cores} x {stages['parse']:.1f} / {total:.1f} = {cores * stages['parse'] / total:.3f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
