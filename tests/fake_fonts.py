"""Tiny TrueType fonts made by the tests (fontTools): a glyph per chosen character, some empty.

Each drawn glyph is a cross, the .notdef a hollow box, so a real renderer (Pillow/FreeType)
tells them apart exactly as it does for a real font.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen


def _rect(pen: TTGlyphPen, x0: int, y0: int, x1: int, y1: int, clockwise: bool = True) -> None:
    pts = [(x0, y0), (x0, y1), (x1, y1), (x1, y0)]
    pts = pts if clockwise else pts[::-1]
    pen.moveTo(pts[0])
    for p in pts[1:]:
        pen.lineTo(p)
    pen.closePath()


def build_font(path: Path, glyphs: dict[str, bool], family: str = "Test Hand") -> Path:
    """A TTF at `path` mapping each char of `glyphs` to a cross (True) or an empty outline."""
    names = [".notdef"] + [f"g{i}" for i in range(len(glyphs))]
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({ord(c): f"g{i}" for i, c in enumerate(glyphs)})
    outlines = {}
    pen = TTGlyphPen(None)
    _rect(pen, 100, 0, 900, 800)
    _rect(pen, 180, 80, 820, 720, clockwise=False)  # the hole of the .notdef box
    outlines[".notdef"] = pen.glyph()
    for i, has_outline in enumerate(glyphs.values()):
        pen = TTGlyphPen(None)
        if has_outline:
            _rect(pen, 100, 330, 900, 470)  # a cross: one horizontal, one vertical bar
            _rect(pen, 430, 0, 570, 800)
        outlines[f"g{i}"] = pen.glyph()
    fb.setupGlyf(outlines)
    fb.setupHorizontalMetrics({n: (1000, 0) for n in names})
    fb.setupHorizontalHeader(ascent=880, descent=-120)
    fb.setupNameTable({"familyName": family, "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=880, sTypoDescender=-120, usWinAscent=880, usWinDescent=120)
    fb.setupPost()
    path.parent.mkdir(parents=True, exist_ok=True)
    fb.save(str(path))
    return path


def split_font_folder(folder: Path, files: list[Path | bytes], ranges: list[list[int]],
                      family: str = "Test Hand") -> Path:  # fmt: skip
    """A handwriting-font folder as `hccr-data fonts install` writes it: subset files (a path
    is copied, bytes are written as they are: a broken file) and index.json."""
    folder.mkdir(parents=True)
    names = []
    for i, f in enumerate(files):
        name = f"sub-{i}.woff2"
        (folder / name).write_bytes(f.read_bytes() if isinstance(f, Path) else f)
        names.append(name)
    index = {"family": family, "package": "test@1.0.0", "licence": "OFL-1.1", "look": "test",
             "files": names, "ranges": ranges}  # fmt: skip
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def npm_tarball(path: Path, members: dict[str, bytes]) -> Path:
    """A .tgz laid out as `npm pack` writes one (package/...)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
