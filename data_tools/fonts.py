"""CJK fonts: discovery (fc-list and the handwriting-font cache), coverage, glyph rendering.

Two kinds of face: a font file found by fc-list (or under --font-dir), and a handwriting font
installed by `hccr-data fonts install` into FONT_CACHE: a folder of woff2 subsets with an
`index.json` saying which file holds each code point (data_tools/font_install.py).

A glyph is never emitted empty or as tofu: `GlyphFont.check` says why a character cannot be
drawn (SKIP_REASONS): not in the font's cmap, drawn as the font's .notdef box, an empty
outline, or a font file that fails to load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PACKAGES = (
    "fonts-arphic-ukai",
    "fonts-arphic-uming",
    "fonts-lxgw-wenkai",
    "fonts-wqy-zenhei",
    "fonts-wqy-microhei",
)
FONT_CACHE = Path(
    os.environ.get("HCCR_FONT_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hccr" / "fonts"
)
INDEX_NAME = "index.json"
HANDWRITING_INSTALL = "hccr-data fonts install"
INSTALL_HINT = (
    f"{HANDWRITING_INSTALL} (handwriting fonts, npm) and sudo apt-get install "
    + " ".join(FONT_PACKAGES)
)
# Families held out of the training split: `--split val` draws font styles only from these, so
# validation measures transfer to hands never seen in training: two handwriting fonts (brush
# running script, brush kai), one Kai print face, one sans.
HOLDOUT_FAMILIES = ("Zhi Mang Xing", "Ma Shan Zheng", "AR PL UKai", "WenQuanYi Micro Hei")
SKIP_REASONS = ("not_in_cmap", "notdef", "empty_outline", "load_error")
# Licences of the system fonts .ci/run installs (the cache's fonts carry theirs in index.json).
SYSTEM_LICENCES = {
    "AR PL": "Arphic Public License",
    "LXGW WenKai": "OFL-1.1",
    "WenQuanYi Zen Hei": "GPL-2.0 with font embedding exception",
    "WenQuanYi Micro Hei": "Apache-2.0 or GPL-3.0 with font embedding exception",
}
_PROBE_CHAR = "永"  # every CJK font has it; used to tell CJK fonts from the rest
_MISSING_CODEPOINT = "\U0010fffd"  # plane-16 private use: no font maps it, so it draws .notdef
_FONT_SUFFIXES = (".ttf", ".ttc", ".otf", ".otc")
# Handwriting-like families (regular script, "Kai") are preferred over print ones.
_HANDWRITING = re.compile(r"kai|hand|brush|xingkai|shouxie", re.IGNORECASE)
_BOLD = re.compile(r"bold|heavy|black|semibold|demibold", re.IGNORECASE)
_REGION = re.compile(r"\b(SC|CN|TC|TW|HK|JP|KR|MBE)\b")


class MissingFontsError(OSError):
    """No usable CJK font is installed."""


@dataclass(frozen=True)
class FontFace:
    """One face of a font file (a .ttc holds several)."""

    path: str  # a font file, or a folder of split subsets with an index.json
    index: int
    family: str
    style: str
    licence: str = ""
    handwriting: bool = False  # one person's handwriting (the cache's fonts)

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()

    @property
    def is_handwriting(self) -> bool:
        return self.handwriting or bool(_HANDWRITING.search(self.family))

    @property
    def is_split(self) -> bool:
        return os.path.isdir(self.path)

    def describe(self) -> dict:
        """What the LMDB metadata records about a face that fed it."""
        licence = self.licence or next(
            (v for k, v in SYSTEM_LICENCES.items() if self.family.startswith(k)), "unknown"
        )
        return {"name": self.name, "family": self.family, "licence": licence,
                "handwriting": self.handwriting, "preferred": self.is_handwriting}  # fmt: skip

    @property
    def is_holdout(self) -> bool:
        return any(self.family.startswith(f) for f in HOLDOUT_FAMILIES)


def discover_fonts(
    font_dirs: Sequence[str | Path] | None = None, cache: Path | None = FONT_CACHE
) -> list[FontFace]:
    """The distinct CJK faces installed (fc-list and the handwriting-font `cache`), or found
    under `font_dirs` when given (font files and installed handwriting-font folders).

    One face per font file (the Simplified Chinese one of a multi-region .ttc), monospaced twins
    of a proportional family and bold faces dropped, sorted by family and style.

    Raises:
        MissingFontsError: when there is none, with the command that installs some.
    """
    if font_dirs is None and shutil.which("fc-list"):
        faces = _faces_from_fc_list()
    else:
        dirs = (
            font_dirs if font_dirs is not None else ["/usr/share/fonts", "/usr/local/share/fonts"]
        )
        faces = _faces_from_dirs(dirs)
    for d in [*(font_dirs or []), *([cache] if font_dirs is None and cache else [])]:
        faces += _faces_from_cache(Path(d))
    # Bold faces are far from pen strokes (and their skeletons repeat the regular face's).
    faces = [f for f in faces if not _BOLD.search(f.style) and _is_cjk(f)]
    faces = _dedupe(faces)
    if not faces:
        where = ", ".join(map(str, font_dirs)) if font_dirs is not None else "fc-list :lang=zh"
        raise MissingFontsError(f"no CJK font found ({where}); install some with: {INSTALL_HINT}")
    return sorted(faces, key=lambda f: (f.family, f.style))


def fonts_for_split(faces: Sequence[FontFace], split: str) -> list[FontFace]:
    """Train gets every face outside HOLDOUT_FAMILIES, val only those; all faces when one side
    would be empty (a machine with a single font family)."""
    train = [f for f in faces if not f.is_holdout]
    val = [f for f in faces if f.is_holdout]
    if not train or not val:
        return list(faces)
    return val if split == "val" else train


def _faces_from_fc_list() -> list[FontFace]:
    fmt = "%{file}\t%{index}\t%{family[0]}\t%{style[0]}\n"
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh", "--format", fmt], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    faces = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0].lower().endswith(_FONT_SUFFIXES):
            continue
        faces.append(FontFace(parts[0], int(parts[1] or 0), parts[2], parts[3]))
    return faces


def _faces_from_dirs(dirs: Iterable[str | Path]) -> list[FontFace]:
    faces = []
    for d in dirs:
        for path in sorted(Path(d).rglob("*")) if Path(d).is_dir() else []:
            if path.suffix.lower() not in _FONT_SUFFIXES or (path.parent / INDEX_NAME).exists():
                continue  # a split font's subsets are read through its index, as one face
            for index in range(64):  # faces of a collection, until FreeType says there is none
                try:
                    font = ImageFont.truetype(str(path), 16, index=index)
                except OSError:
                    break
                family, style = font.getname()
                faces.append(FontFace(str(path), index, family or path.stem, style or ""))
    return faces


def load_split_index(folder: str | Path) -> dict:
    """A handwriting-font folder's index.json (family, package, licence, files, ranges)."""
    return json.loads((Path(folder) / INDEX_NAME).read_text(encoding="utf-8"))


def _faces_from_cache(cache: Path) -> list[FontFace]:
    faces = []
    indexes = sorted(cache.glob(f"*/{INDEX_NAME}")) if cache.is_dir() else []
    if (cache / INDEX_NAME).is_file():  # one family's folder itself
        indexes.append(cache / INDEX_NAME)
    for index in indexes:
        try:
            info = load_split_index(index.parent)
            faces.append(
                FontFace(str(index.parent), 0, info["family"], "Regular", info["licence"], True)
            )
        except (OSError, ValueError, KeyError):
            continue  # a damaged folder: `hccr-data fonts install --force` rebuilds it
    return faces


def handwriting_fonts_hint(faces: Sequence[FontFace]) -> str | None:
    """A note naming the install command when no cached handwriting font is among `faces`."""
    if any(f.handwriting for f in faces):
        return None
    return f"no handwriting fonts installed (font styles use print faces only); run: {HANDWRITING_INSTALL}"


def _is_cjk(face: FontFace) -> bool:
    if face.is_split:
        return True  # the installer only keeps CJK handwriting fonts
    try:
        return GlyphFont(face, size=32).render(_PROBE_CHAR) is not None
    except OSError:
        return False


def _dedupe(faces: list[FontFace]) -> list[FontFace]:
    def score(f: FontFace) -> int:
        m = _REGION.search(f.family)
        region = 2 if m and m.group(1) in ("SC", "CN") else (0 if m is None else -1)
        return region - 3 * ("Mono" in f.family or "Sharp" in f.family)

    best: dict[str, FontFace] = {}
    for f in faces:
        if f.path not in best or score(f) > score(best[f.path]):
            best[f.path] = f
    chosen = list(best.values())
    families = {f.family for f in chosen}
    # "LXGW WenKai Mono" draws the same hanzi as "LXGW WenKai"
    return [
        f
        for f in chosen
        if f.family.replace(" Mono", "") == f.family
        or f.family.replace(" Mono", "") not in families
    ]


class GlyphFont:
    """A face opened at one pixel size; renders ink-bright glyphs, None for missing ones.

    A split face (a cache folder) opens the subset file that holds each character, on demand;
    a file that fails to load makes its characters `load_error`, never the whole run fail.
    Raises OSError only for a single-file face whose file cannot be opened.
    """

    _MAX_OPEN = 256  # split subsets kept open (TTF files, memory-mapped by FreeType)

    def __init__(self, face: FontFace, size: int = 96) -> None:
        self.face = face
        self.size = size
        self._fonts: dict[int, ImageFont.FreeTypeFont | None] = {}
        self._notdef: dict[int, np.ndarray] = {}
        self._split = face.is_split
        if self._split:
            info = load_split_index(face.path)
            self._files = [str(Path(face.path) / f) for f in info["files"]]
            r = np.asarray(info["ranges"], np.int64).reshape(-1, 3)
            r = r[np.argsort(r[:, 0], kind="stable")]  # searched by first code point
            self._first, self._last, self._file = r[:, 0], r[:, 1], r[:, 2]
        else:
            self._files = [face.path]
            self._fonts[0] = ImageFont.truetype(face.path, size, index=face.index)

    def _file_of(self, ch: str) -> int | None:
        if not self._split:
            return 0
        cp = ord(ch)
        i = int(np.searchsorted(self._first, cp, side="right")) - 1
        return int(self._file[i]) if i >= 0 and self._last[i] >= cp else None

    def _font(self, k: int) -> ImageFont.FreeTypeFont | None:
        if k not in self._fonts:
            if len(self._fonts) >= self._MAX_OPEN:
                self._fonts.pop(next(iter(self._fonts)))  # the oldest opened
            try:
                self._fonts[k] = ImageFont.truetype(self._files[k], self.size)
            except OSError:
                self._fonts[k] = None
        return self._fonts[k]

    def _draw(self, ch: str, font: ImageFont.FreeTypeFont) -> np.ndarray:
        img = Image.new("L", (self.size * 5 // 4, self.size * 5 // 4), 0)
        c = self.size * 5 // 8
        ImageDraw.Draw(img).text((c, c), ch, font=font, fill=255, anchor="mm")
        return np.asarray(img)

    def check(self, ch: str) -> tuple[np.ndarray | None, str | None]:
        """(glyph, None), or (None, reason in SKIP_REASONS) when `ch` cannot be drawn."""
        k = self._file_of(ch)
        if k is None:
            return None, "not_in_cmap"
        font = self._font(k)
        if font is None:
            return None, "load_error"
        img = self._draw(ch, font)
        rows = np.flatnonzero(img.max(axis=1) > 32)
        if rows.size == 0:
            return None, "empty_outline"
        if not self._split:  # a split face's cmap has said the glyph is there
            if k not in self._notdef:
                self._notdef[k] = self._draw(_MISSING_CODEPOINT, font)
            if np.array_equal(img, self._notdef[k]):
                return None, "notdef"
        cols = np.flatnonzero(img.max(axis=0) > 32)
        return np.ascontiguousarray(img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]), None

    def render(self, ch: str) -> np.ndarray | None:
        """(H, W) uint8 ink map of `ch` cropped to its ink, or None if the font lacks it."""
        return self.check(ch)[0]


def check_coverage(
    faces: Sequence[FontFace], chars: Iterable[str], size: int = 32
) -> dict[str, list[str]]:
    """Face name -> the characters of `chars` it lacks (empty or tofu glyph)."""
    chars = list(chars)
    missing = {}
    for face in faces:
        font = GlyphFont(face, size=size)
        missing[face.name] = [ch for ch in chars if font.render(ch) is None]
    return missing
