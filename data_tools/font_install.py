"""`hccr-data fonts install|list`: handwriting fonts from npm, cached outside the repository.

Each font is one real person's hand over the 3,755 GB2312 level-1 characters, a new writer for
the `font` and `skeleton` styles of `hccr-data synth`. The npm packages ship each font split
into woff2 subsets; `install` runs `npm pack` (the tarball only, no dependencies, no scripts),
keeps the font files and the licence, and writes `index.json` per family: which subset file
holds each code point (read with fontTools), so the generator opens the right file per
character without merging anything. `make fonts` and `.ci/run` call this command.

Licences (checked in each font's name table and package): all four are SIL OFL 1.1, which
allows this use and redistribution. 鸿雷行书简体 (@chinese-fonts/hlxsjt) is left out: its font
says "Copyright (c) 2022 by 林鸿雷. All rights reserved." with no licence entry; the package's
MIT licence is the repackager's and cannot license the font.

    hccr-data fonts install            # into ~/.cache/hccr/fonts (or $HCCR_FONT_DIR)
    hccr-data fonts list               # what is installed, with licences and coverage
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from data_tools.fonts import FONT_CACHE, INDEX_NAME, load_split_index


@dataclass(frozen=True)
class FontSource:
    """A handwriting font in an npm package: which files to keep and what they are."""

    family: str
    package: str  # npm spec, pinned: the same files on every machine
    pattern: str  # glob of the font files inside the tarball
    licence: str
    licence_file: str  # inside the tarball; "" when the package has none for the font
    look: str  # judged by eye on a contact sheet

    @property
    def slug(self) -> str:
        return self.family.lower().replace(" ", "-")


SOURCES = (
    FontSource(
        "Long Cang",
        "@fontsource/long-cang@5.3.0",
        "package/files/long-cang-*-400-normal.woff2",
        "OFL-1.1",
        "package/LICENSE",
        "brush-pen semi-cursive handwriting, irregular",
    ),
    FontSource(
        "Xiaolai SC",
        "@excalidraw/excalidraw@0.18.1",
        "package/dist/prod/fonts/Xiaolai/*.woff2",
        "OFL-1.1 (Xiaolai / kose-font by LXGW, from Nozomi Seto's SetoFont)",
        "",
        "neat felt-tip pen handwriting",
    ),
    FontSource(
        "Zhi Mang Xing",
        "@fontsource/zhi-mang-xing@5.3.0",
        "package/files/zhi-mang-xing-*-400-normal.woff2",
        "OFL-1.1",
        "package/LICENSE",
        "brush running script (xingshu), irregular",
    ),
    FontSource(
        "Ma Shan Zheng",
        "@fontsource/ma-shan-zheng@5.3.1",
        "package/files/ma-shan-zheng-*-400-normal.woff2",
        "OFL-1.1",
        "package/LICENSE",
        "brush calligraphy, regular script (kai)",
    ),
)


class FontInstallError(OSError):
    """npm is missing or a package could not be fetched or read."""


def install(cache: Path = FONT_CACHE, force: bool = False, quiet: bool = False) -> list[Path]:
    """Installs every `SOURCES` font into `cache/<slug>/` (skipping installed ones unless
    `force`); returns the family folders. A folder appears whole or not at all."""
    npm = shutil.which("npm")
    cache.mkdir(parents=True, exist_ok=True)
    done = []
    for src in SOURCES:
        target = cache / src.slug
        if not force and _installed(target, src):
            done.append(target)
            continue
        if npm is None:
            raise FontInstallError("npm not found; install Node.js (apt-get install npm)")
        with tempfile.TemporaryDirectory(dir=cache, prefix=".pack-") as tmp:
            tgz = _npm_pack(npm, src.package, Path(tmp))
            staging = Path(tmp) / src.slug
            _extract(tgz, src, staging)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        if not quiet:
            info = load_split_index(target)
            print(f"{target}: {src.family}, {len(info['files'])} files, {src.licence}")
        done.append(target)
    return done


def _installed(target: Path, src: FontSource) -> bool:
    try:
        return load_split_index(target)["package"] == src.package
    except (OSError, ValueError, KeyError):
        return False


def _npm_pack(npm: str, spec: str, dest: Path) -> Path:
    cmd = [npm, "pack", spec, "--pack-destination", str(dest), "--json", "--ignore-scripts"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FontInstallError(f"npm pack {spec} failed: {tail}")
    name = json.loads(proc.stdout)[0]["filename"].replace("@", "").replace("/", "-")
    path = dest / name
    if not path.is_file():  # npm's naming of scoped tarballs: take whatever it wrote
        path = next(dest.glob("*.tgz"))
    return path


def _extract(tgz: Path, src: FontSource, staging: Path) -> None:
    from fontTools.ttLib import TTFont  # install time only

    staging.mkdir()
    files, cmap = [], {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = PurePosixPath(member.name)
            if member.isfile() and name.match(src.pattern):
                data = tar.extractfile(member).read()
                (staging / name.name).write_bytes(data)
                files.append(name.name)
            elif member.isfile() and member.name == src.licence_file:
                (staging / "LICENSE").write_bytes(tar.extractfile(member).read())
    if not files:
        raise FontInstallError(f"{tgz.name}: no file matches {src.pattern}")
    files.sort()
    for i, name in enumerate(files):
        for cp in TTFont(staging / name, lazy=True).getBestCmap():
            cmap.setdefault(cp, i)  # the first file holding a code point serves it
    index = {
        "family": src.family,
        "package": src.package,
        "licence": src.licence,
        "look": src.look,
        "files": files,
        "ranges": _ranges(cmap),
    }
    (staging / INDEX_NAME).write_text(json.dumps(index, ensure_ascii=False) + "\n")


def _ranges(cmap: dict[int, int]) -> list[list[int]]:
    # [first, last, file] runs of consecutive code points in one file: ~1,000 runs, not 20,000
    out: list[list[int]] = []
    for cp in sorted(cmap):
        f = cmap[cp]
        if out and out[-1][1] == cp - 1 and out[-1][2] == f:
            out[-1][1] = cp
        else:
            out.append([cp, cp, f])
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("install", "list"), help="install or list the fonts")
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
    found = sorted(p.parent for p in args.dir.glob(f"*/{INDEX_NAME}")) if args.dir.is_dir() else []
    if not found:
        print(f"no handwriting fonts in {args.dir}; install them with: hccr-data fonts install")
        return 1
    for folder in found:
        info = load_split_index(folder)
        print(f"{info['family']}: {info['licence']}; {info['look']}; {info['package']} ({folder})")
    return 0
