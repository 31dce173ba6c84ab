"""Trajectory LMDBs: bytes per sample and DataLoader samples/s, beside an image LMDB, one run.

Both LMDBs are made here by `hccr-data synth` from the same seed and classes (strokes style
only: the style that has trajectories); a trajectory LMDB stores the normalised points and its
DataLoader workers draw the (9, S, S) maps, with `StrokeAugment` when training. Reported:
bytes per sample on disk and the samples/s of one DataLoader worker (batch 128) over the
trajectory LMDB without and with augmentation, and over the image LMDB with the image
augmentation, each after one warm-up batch.

    python bench/trajectory_loader.py [--classes 200] [--per-char 10] [--batches 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def synth(out: Path, chars: Path, per_char: int, *extra: str) -> None:
    cmd = [sys.executable, "-m", "data_tools.cli", "synth", "-o", str(out), "--chars", str(chars),
           "--per-char", str(per_char), "--styles", "strokes", "--no-progress", *extra]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


def samples_per_s(dataset, batches: int) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=1, drop_last=True)
    it = iter(loader)
    next(it)  # worker start-up and first batch: not timed
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        x, _ = next(it)
        n += len(x)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-char", type=int, default=15)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    import torch

    from hccr.augment import StrokeAugment, train_augment
    from hccr.charset import Charset
    from hccr.dataset import LmdbDataset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="hccr-traj-") as work:
        work = Path(work)
        chars = work / "chars.txt"
        chars.write_text("\n".join(Charset.gb1().chars[: args.classes]) + "\n", encoding="utf-8")
        strokes, images = work / "strokes.lmdb", work / "images.lmdb"
        synth(strokes, chars, args.per_char, "--input", "strokes")
        synth(images, chars, args.per_char)
        n = args.classes * args.per_char
        rows = []
        for name, path in (("trajectory (points)", strokes), ("image", images)):
            size = (path / "data.mdb").stat().st_size
            rows.append((name, size / n))
        plain = LmdbDataset(strokes)
        speeds = {
            "trajectory, no augmentation": samples_per_s(plain, args.batches),
            "trajectory, StrokeAugment": samples_per_s(
                LmdbDataset(strokes, transform=StrokeAugment(1.0)), args.batches
            ),
            "image, train_augment": samples_per_s(
                LmdbDataset(images, transform=train_augment(64, 1.0)), args.batches
            ),
        }
    print(f"{n:,} samples per LMDB ({args.classes} classes x {args.per_char}), batch 128, 1 worker")
    print("| LMDB | bytes / sample | 600k samples |")
    print("| --- | ---: | ---: |")
    for name, b in rows:
        print(f"| {name} | {b:,.0f} | {b * 600_000 / 1e9:.2f} GB |")
    print("| loader (1 worker) | samples/s |")
    print("| --- | ---: |")
    for name, v in speeds.items():
        print(f"| {name} | {v:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
