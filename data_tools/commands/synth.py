"""Generate synthetic handwriting: N samples per class into an LMDB (and a CASIA .gnt).

Three styles are mixed per sample (--styles): `strokes` (Make Me a Hanzi stroke medians,
departing from them as the fitted writer statistics say, joined cursively, inked as canvas
input or as a scanned ballpoint), `font` (CJK font glyphs, handwriting and Kai faces preferred,
warped) and `skeleton` (font glyphs thinned and re-inked with a round pen). Fonts: the
system's and the handwriting fonts of `hccr-data fonts install`. Output is deterministic for
--seed whatever --workers is.

--split val draws a different seed stream and, for the font styles, only the held-out font
families (data_tools.fonts.HOLDOUT_FAMILIES: Zhi Mang Xing, Ma Shan Zheng, AR PL UKai,
WenQuanYi Micro Hei), which --split train never uses. --features switches parts of the
generator on or off (ablations; `layout` is off by default).

Examples:
  hccr-data synth -o data/synth-train.lmdb --per-char 100
  hccr-data synth -o data/synth-val.lmdb --per-char 10 --split val
  hccr-data synth --preview sheet.png
  hccr-data synth -o data/synth-online.lmdb --per-char 100 --input strokes --styles strokes
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from data_tools import styles
from data_tools.fonts import (
    MissingFontsError,
    discover_fonts,
    fonts_for_split,
    handwriting_fonts_hint,
)
from data_tools.sampler import (
    SPLITS,
    SynthConfig,
    SynthError,
    parse_features,
    parse_styles,
    preview_sheet,
)
from data_tools.synth import write_synth
from hccr.charset import Charset
from hccr.preprocess import DEFAULT_IMAGE_SIZE, NORM_METHODS, NormConfig
from hccr.trajectory import INPUT_KINDS, TrajectoryConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags, one call each: a flat list reads best in the order `--help` shows it."""
    parser.add_argument("-o", "--output", type=Path, metavar="OUT.lmdb", help="output LMDB folder")
    parser.add_argument(
        "--chars",
        default="gb1",
        metavar="gb1|FILE",
        help="classes: gb1 (3,755 GB2312 level-1 hanzi) or a charset file",
    )
    parser.add_argument(
        "--per-char", type=int, default=100, metavar="N", help="samples per class (default: 100)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    parser.add_argument(
        "--split",
        choices=tuple(SPLITS),
        default="train",
        help="train, or val: another seed stream and held-out font families",
    )
    parser.add_argument(
        "--styles",
        metavar="SPEC",
        default=",".join(f"{k}={v}" for k, v in styles.DEFAULT_STYLE_WEIGHTS.items()),
        help="style mix, e.g. strokes=0.6,font=0.25,skeleton=0.15 (default: %(default)s)",
    )
    parser.add_argument(
        "--features",
        metavar="LIST",
        default="default",
        help="generator parts: default (fonts,cursive,ink), all, none, or a comma list of "
        "fonts (handwriting fonts), cursive (stroke variation fitted to a real writer; off: "
        "hand-set), ink (ink matched to scans; off: plain), layout (a writer's part layout "
        "and character shape; off: parts fixed, font glyphs print-square)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        metavar="S",
        help=f"normalised image side (default: {DEFAULT_IMAGE_SIZE})",
    )
    parser.add_argument(
        "--norm",
        choices=NORM_METHODS,
        default="moment",
        help="normalisation (default: moment)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="processes (default: all cores)",
    )
    parser.add_argument(
        "--gnt", type=Path, metavar="FILE", help="also write the samples as a CASIA .gnt file"
    )
    parser.add_argument(
        "--preview", type=Path, metavar="PNG", help="write a PNG contact sheet of random samples"
    )
    parser.add_argument(
        "--preview-count",
        type=int,
        default=128,
        metavar="N",
        help="samples on the sheet (default: 128)",
    )
    parser.add_argument(
        "--font-dir",
        type=Path,
        metavar="DIR",
        action="append",
        help="look for fonts here instead of asking fc-list (repeatable)",
    )
    parser.add_argument(
        "--input",
        default="image",
        choices=INPUT_KINDS,
        help="image: normalised images; strokes: pen trajectories (normalised points, drawn as "
        "ink + 8 direction maps when read) for an online model. Only the strokes style makes "
        "trajectories: --input strokes needs --styles strokes (default: image)",
    )
    parser.add_argument(
        "--pen-up",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --input strokes: a 10th map of the pen's moves between strokes",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output LMDB")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar"
    )


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    if args.output is None and args.gnt is None and args.preview is None:
        raise SynthError("nothing to write: give -o OUT.lmdb, --gnt FILE or --preview PNG")
    if args.per_char < 1:
        raise SynthError(f"--per-char must be >= 1, got {args.per_char}")
    charset = Charset.from_spec(args.chars)
    cfg = SynthConfig(
        per_char=args.per_char,
        seed=args.seed,
        split=args.split,
        styles=parse_styles(args.styles),
        features=parse_features(args.features),
        norm=NormConfig(size=args.size, method=args.norm),
        trajectory=(
            TrajectoryConfig(size=args.size, pen_up=args.pen_up)
            if args.input == "strokes"
            else None
        ),
    )
    try:
        faces = fonts_for_split(discover_fonts(args.font_dir), args.split)
    except MissingFontsError:
        if {"font", "skeleton"} & set(cfg.styles):
            raise
        faces = []  # stroke data alone needs no font
    fonts_wanted = {"font", "skeleton"} & set(cfg.styles) and "fonts" in cfg.features
    hint = handwriting_fonts_hint(faces) if fonts_wanted else None
    if hint:
        print(f"hccr-data synth: note: {hint}", file=sys.stderr)
    if args.preview is not None:
        Image.fromarray(preview_sheet(charset, faces, cfg, count=args.preview_count)).save(
            args.preview
        )
        print(f"{args.preview}: {args.preview_count} samples")
    if args.output is None and args.gnt is None:
        return 0
    summary = write_synth(
        args.output,
        charset,
        faces,
        cfg,
        workers=args.workers,
        gnt_path=args.gnt,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    total = len(charset) * cfg.per_char
    where = " and ".join(str(p) for p in (args.output, args.gnt) if p is not None)
    print(
        f"{where}: {total:,} samples, {len(charset)} classes x {cfg.per_char}, split {cfg.split}, "
        f"seed {cfg.seed}; styles {summary['style_counts']}"
    )
    lacking = {k: v for k, v in summary["font_missing_chars"].items() if v}
    if lacking:
        print(
            "characters some fonts lack (never drawn from them): "
            + ", ".join(f"{k}: {v}" for k, v in lacking.items())
        )
    return 0
