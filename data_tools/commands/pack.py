"""Pack CASIA-HWDB `.gnt` / OLHWDB `.pot` files into a normalised hccr LMDB.

`--input strokes` (`.pot` only) stores each record's pen trajectory as normalised points for an
online model (`hccr.trajectory`) instead of a normalised image.

The main process checks each file's record framing (size fields only), then a pool of workers
parses, normalises and compresses chunks of records while the main process writes them in
order. Output is atomic: an interrupted or failed pack leaves no LMDB behind. Every record read
is either written or counted under a skip reason, and the counts are stored in the metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from data_tools.pack import (
    PackOptions,
    find_sources,
    pack,
    parse_writer_ranges,
    seen_chars,
    writer_id,
)
from hccr.charset import Charset
from hccr.lmdb_format import check_output
from hccr.preprocess import DEFAULT_IMAGE_SIZE, NORM_METHODS, NormConfig
from hccr.trajectory import INPUT_KINDS, TrajectoryConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help=".gnt/.pot files or folders (searched recursively)",
    )
    parser.add_argument("-o", "--out", required=True, type=Path, help="output LMDB folder")
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help=f"normalised image side (default: {DEFAULT_IMAGE_SIZE})",
    )
    parser.add_argument(
        "--norm", default="moment", choices=NORM_METHODS, help="normalisation (default: moment)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores)",
    )
    parser.add_argument(
        "--charset",
        default="gb1",
        help="gb1 (GB2312 level 1, 3,755 classes), seen (classes in the sources), or a file",
    )
    parser.add_argument(
        "--writers", help="keep only these writer ids, e.g. 1001-1240,1300 (from file names)"
    )
    parser.add_argument(
        "--pen-width",
        type=float,
        default=0.035,
        help=".pot pen width, fraction of the character box",
    )
    parser.add_argument(
        "--input",
        default="image",
        choices=INPUT_KINDS,
        help="image: normalised images (the image model's input); strokes: the .pot pen "
        "trajectories as normalised points, drawn as ink + 8 direction maps when read (the "
        "online model's input; .pot sources only) (default: image)",
    )
    parser.add_argument(
        "--pen-up",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --input strokes: a 10th map of the pen's moves between strokes",
    )
    parser.add_argument(
        "--skip-bad",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="skip corrupt records (and report them) instead of stopping",
    )
    parser.add_argument(
        "--report", type=Path, help="write every skipped record as JSON lines to this file"
    )
    parser.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="replace OUT if it is an LMDB made by hccr-data (anything else is refused)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="progress bar on stderr",
    )


def run(args: argparse.Namespace) -> int:
    check_output(args.out, args.overwrite)  # refuse a bad target before reading any source
    sources = find_sources(args.sources)
    if args.writers:
        keep = parse_writer_ranges(args.writers)
        sources = [p for p in sources if writer_id(p) in keep]
        if not sources:
            raise ValueError(f"no source file has a writer id in {args.writers}")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    seen = seen_chars(sources) if args.charset == "seen" else None
    charset = Charset.from_spec(args.charset, seen)
    trajectory = (
        TrajectoryConfig(size=args.size, pen_up=args.pen_up) if args.input == "strokes" else None
    )
    options = PackOptions(
        NormConfig(size=args.size, method=args.norm),
        charset,
        args.pen_width,
        args.skip_bad,
        trajectory,
    )
    meta = pack(
        sources, args.out, options, args.workers, args.overwrite, args.report, args.progress
    )
    print(
        f"{args.out}: {meta['num_samples']} samples of {meta['records']} records, "
        f"{meta['num_classes']} classes, {len(sources)} files",
        file=sys.stderr,
    )
    for reason, n in sorted(meta["skipped"].items(), key=lambda kv: -kv[1]):
        print(f"  skipped {n}: {reason}", file=sys.stderr)
    return 0
