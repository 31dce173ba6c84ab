"""Installed CJK fonts: discovery (fc-list), per-character coverage, glyph rendering.

A glyph is never emitted empty or as tofu: `GlyphFont.render` returns None for a character
the font lacks, judged by an empty bounding box or by a bitmap identical to the font's own
rendering of a code point no font has (its .notdef box).
"""

from __future__ import annotations

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
INSTALL_HINT = "sudo apt-get install " + " ".join(FONT_PACKAGES)
# Families held out of the training split: `--split val` draws font styles only from these, so
# validation measures transfer to a font never seen in training (one Kai, one sans).
HOLDOUT_FAMILIES = ("AR PL UKai", "WenQuanYi Micro Hei")
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

    path: str
    index: int
    family: str
    style: str

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()

    @property
    def is_handwriting(self) -> bool:
        return bool(_HANDWRITING.search(self.family))

    @property
    def is_holdout(self) -> bool:
        return any(self.family.startswith(f) for f in HOLDOUT_FAMILIES)


def discover_fonts(font_dirs: Sequence[str | Path] | None = None) -> list[FontFace]:
    """The distinct CJK faces installed (fc-list), or found under `font_dirs` when given.

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
            if path.suffix.lower() not in _FONT_SUFFIXES:
                continue
            for index in range(64):  # faces of a collection, until FreeType says there is none
                try:
                    font = ImageFont.truetype(str(path), 16, index=index)
                except OSError:
                    break
                family, style = font.getname()
                faces.append(FontFace(str(path), index, family or path.stem, style or ""))
    return faces


def _is_cjk(face: FontFace) -> bool:
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
    """A face opened at one pixel size; renders ink-bright glyphs, None for missing ones."""

    def __init__(self, face: FontFace, size: int = 96) -> None:
        self.face = face
        self.size = size
        self.font = ImageFont.truetype(face.path, size, index=face.index)
        self._notdef = self._draw(_MISSING_CODEPOINT)

    def _draw(self, ch: str) -> np.ndarray:
        img = Image.new("L", (self.size * 5 // 4, self.size * 5 // 4), 0)
        c = self.size * 5 // 8
        ImageDraw.Draw(img).text((c, c), ch, font=self.font, fill=255, anchor="mm")
        return np.asarray(img)

    def render(self, ch: str) -> np.ndarray | None:
        """(H, W) uint8 ink map of `ch` cropped to its ink, or None if the font lacks it."""
        img = self._draw(ch)
        rows = np.flatnonzero(img.max(axis=1) > 32)
        if rows.size == 0 or np.array_equal(img, self._notdef):
            return None
        cols = np.flatnonzero(img.max(axis=0) > 32)
        return np.ascontiguousarray(img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


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
