"""`hccr-data fonts install|list|sheet`: handwriting fonts from npm, cached outside the repository.

Each font is one real person's hand over the 3,755 GB2312 level-1 characters, a new writer for
the `font` and `skeleton` styles of `hccr-data synth`; all four are SIL OFL 1.1
(data_tools/font_install.py says how they are fetched and why one font is left out).
`make fonts` and `.ci/run` call this command.

    hccr-data fonts install            # into ~/.cache/hccr/fonts (or $HCCR_FONT_DIR)
    hccr-data fonts list               # what is installed, with licences and coverage
    hccr-data fonts sheet -o fonts.png # the same characters in every font, one row per font
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_tools.font_install import SHEET_CHARS, contact_sheet, install
from data_tools.fonts import FONT_CACHE, INDEX_NAME, load_split_index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=("install", "list", "sheet"), help="install, list or show the fonts"
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("fonts.png"),
                        help="sheet: the PNG to write (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--dir",
        type=Path,
        default=FONT_CACHE,
        help="font cache folder (default: $HCCR_FONT_DIR or ~/.cache/hccr/fonts: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="fetch again even if installed")


def run(args: argparse.Namespace) -> int:
    if args.action == "install":
        install(args.dir, force=args.force)  # errors: one line from run_cli
        return 0
    if args.action == "sheet":
        from PIL import Image

        Image.fromarray(contact_sheet(cache=args.dir)).save(args.output)
        print(f"{args.output}: {SHEET_CHARS} in every installed CJK font")
        return 0
    found = sorted(p.parent for p in args.dir.glob(f"*/{INDEX_NAME}")) if args.dir.is_dir() else []
    if not found:
        print(f"no handwriting fonts in {args.dir}; install them with: hccr-data fonts install")
        return 1
    for folder in found:
        info = load_split_index(folder)
        print(f"{info['family']}: {info['licence']}; {info['look']}; {info['package']} ({folder})")
    return 0
