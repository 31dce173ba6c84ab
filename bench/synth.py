"""Synthetic handwriting throughput: samples/s of `hccr-data synth`, overall and per style.

    python bench/synth.py                      # 20,000 samples (200 classes x 100), 2 workers
    python bench/synth.py --classes 50 --per-char 40 --workers 1

Prints one table: style, samples, wall seconds, samples/s, and CPU seconds (all processes).
The `all` row is the default style mix writing a real LMDB (what `hccr-data synth` does), the
`+layout` row the same with the opt-in part layout (`--features all`); the per-style rows
generate without writing, so they show what each style costs. On a machine shared with other
jobs the wall rate drops; `samples/cpu-s x workers` is what the same run reaches with that many
otherwise idle cores. Fonts: the system's and the handwriting fonts of
`hccr-data fonts install` (train split), as `hccr-data synth` finds them; the strokes style
draws from the fitted writer statistics and the scan ink of data_tools/styles.py.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from data_tools import styles
from data_tools.fonts import discover_fonts, fonts_for_split
from data_tools.sampler import FEATURES
from data_tools.synth import SynthConfig, generate, write_synth
from hccr.charset import Charset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200, help="first N GB2312 level-1 classes")
    parser.add_argument("--per-char", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--styles",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time each style alone",
    )
    args = parser.parse_args(argv)
    charset = Charset(Charset.gb1().chars[: args.classes], name=f"gb1[:{args.classes}]")
    faces = fonts_for_split(discover_fonts(), "train")
    n = len(charset) * args.per_char
    hand = [f.family for f in faces if f.handwriting]
    print(
        f"{n:,} samples ({len(charset)} classes x {args.per_char}), {args.workers} workers, "
        f"{len(faces)} fonts ({len(hand)} handwriting: {', '.join(hand) or 'none'})"
    )
    print(
        f"{'style':<10} {'samples':>8} {'seconds':>8} {'samples/s':>10} {'cpu-s':>8} {'samples/cpu-s':>14}"
    )
    for name, cfg in (
        ("all", SynthConfig(per_char=args.per_char)),
        ("+layout", SynthConfig(per_char=args.per_char, features=FEATURES)),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            t, c = time.perf_counter(), _cpu_seconds()
            write_synth(
                Path(tmp) / "bench.lmdb", charset, faces, cfg, workers=args.workers, progress=False
            )
            _report(name, n, time.perf_counter() - t, _cpu_seconds() - c)
    if args.styles:
        for style in styles.STYLES:
            cfg = SynthConfig(per_char=args.per_char, styles={style: 1.0})
            t, c = time.perf_counter(), _cpu_seconds()
            count = sum(
                len(r["values"]) for r in generate(charset, faces, cfg, workers=args.workers)
            )
            _report(style, count, time.perf_counter() - t, _cpu_seconds() - c)
    return 0


def _cpu_seconds() -> float:
    # this process plus finished (joined) worker processes
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _report(name: str, n: int, wall: float, cpu: float) -> None:
    print(f"{name:<10} {n:>8,} {wall:>8.2f} {n / wall:>10,.0f} {cpu:>8.2f} {n / cpu:>14,.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
