"""`install()`: handwriting fonts from npm, cached outside the repository (`hccr-data fonts`).

Each font is one real person's hand over the 3,755 GB2312 level-1 characters, a new writer for
the `font` and `skeleton` styles of `hccr-data synth`. The npm packages ship each font split
into woff2 subsets; `install` runs `npm pack` (the tarball only, no dependencies, no scripts),
keeps the font files (decompressed to TTF, which opens 100x faster) and the licence, and writes
`index.json` per family: which subset file holds each code point (read with fontTools), so
the generator opens the right file per character without merging anything.

Licences (checked in each font's name table and package): all four are SIL OFL 1.1, which
allows this use and redistribution. 鸿雷行书简体 (@chinese-fonts/hlxsjt) is left out: its font
says "Copyright (c) 2022 by 林鸿雷. All rights reserved." with no licence entry; the package's
MIT licence is the repackager's and cannot license the font.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from data_tools.fonts import FONT_CACHE, INDEX_NAME, GlyphFont, discover_fonts, load_split_index

SHEET_CHARS = "永我的是这说们谢赢龄鹰酬翻骤餐薄藏爱國学"  # simplified-only ones included


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
    fonts = {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = PurePosixPath(member.name)
            if member.isfile() and name.match(src.pattern):
                try:
                    fonts[name.stem + ".ttf"] = TTFont(io.BytesIO(tar.extractfile(member).read()))
                except Exception as e:  # fontTools raises many kinds on a broken file
                    raise FontInstallError(f"{tgz.name}: {member.name}: not a font ({e})") from e
            elif member.isfile() and member.name == src.licence_file:
                (staging / "LICENSE").write_bytes(tar.extractfile(member).read())
    if not fonts:
        raise FontInstallError(f"{tgz.name}: no file matches {src.pattern}")
    files, cmap = sorted(fonts), {}
    for i, name in enumerate(files):
        font = fonts[name]
        for cp in font.getBestCmap():
            cmap.setdefault(cp, i)  # the first file holding a code point serves it
        # decompressed once here: FreeType opens a woff2 in ~10 ms (brotli), a TTF in ~0.1
        font.flavor = None
        font.save(staging / name)
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


def contact_sheet(chars: str = SHEET_CHARS, cell: int = 64, cache: Path = FONT_CACHE) -> np.ndarray:
    """Every discovered face (system and cache) drawing `chars`: one row per face, its name on
    the left; a missing glyph is a grey cell. Dark ink on white."""
    from PIL import Image, ImageDraw

    faces = discover_fonts(cache=cache)
    label_w = 200
    sheet = Image.new("L", (label_w + cell * len(chars), cell * len(faces)), 255)
    draw = ImageDraw.Draw(sheet)
    for row, face in enumerate(faces):
        font = GlyphFont(face, size=cell - 8)
        draw.text((4, row * cell + cell // 2 - 6), face.name[:30], fill=0)
        for col, ch in enumerate(chars):
            x, y = label_w + col * cell, row * cell
            glyph = font.render(ch)
            if glyph is None:
                draw.rectangle((x + 4, y + 4, x + cell - 4, y + cell - 4), fill=200)
                continue
            tile = Image.fromarray(255 - glyph)
            tile.thumbnail((cell - 4, cell - 4))
            sheet.paste(tile, (x + (cell - tile.width) // 2, y + (cell - tile.height) // 2))
    return np.asarray(sheet)
