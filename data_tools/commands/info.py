"""Describe an hccr LMDB: samples, classes, writers, input kind (image or strokes), image
size, normalisation, sources."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_tools.info import summarize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "db", type=Path, metavar="DB.lmdb", help="an LMDB made by hccr-data pack or synth"
    )
    parser.add_argument("--json", action="store_true", help="print the metadata as JSON")


def run(args: argparse.Namespace) -> int:
    info = summarize(args.db)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return 0
    print(f"{info['path']}")
    print(f"  samples      {info['num_samples']:,}")
    print(
        f"  classes      {info['num_classes']:,} ({info.get('charset_name', '?')}: {info['charset_head']}...)"
    )
    print(f"  writers      {info['num_writers']}")
    print(f"  image size   {info['image_size']}x{info['image_size']}")
    if info["input"] == "strokes":
        t = info["trajectory"]
        maps = 1 + 8 + int(t["pen_up"])
        print(
            f"  input        strokes: normalised pen points, drawn as {maps} maps (ink, 8 "
            f"directions{', pen-up' if t['pen_up'] else ''}; pen {t['pen_width']} px, "
            f"step {t['step']} px)"
        )
    else:
        norm = info["norm"]
        print("  input        image")
        print(
            f"  norm         {norm['method']} (margin {norm['margin']}, stretch {norm['stretch']})"
        )
    print(f"  size on disk {info['size_bytes'] / 1e6:.1f} MB")
    if info.get("skipped"):
        for reason, n in info["skipped"].items():
            print(f"  skipped      {n}: {reason}")
    for src, st in info["sources"].items():
        if not isinstance(st, dict):  # an LMDB made from Python may record a bare count
            st = {"written": st}
        print(f"  source       {src}: {st.get('written')} written of {st.get('records', '?')}")
    return 0
