"""One synthetic sample at a time: style choice, font choice, per-sample seeding.

`SampleMaker` turns (character, random generator) into a normalised image with one of the
styles of `data_tools.styles`; `sample_rng` derives each sample's generator from (seed, split,
class, sample) alone, so a dataset is the same whatever the number of worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from data_tools import glyph_styles, handset, layout, styles
from data_tools.fonts import FontFace, GlyphFont
from data_tools.strokes import load_medians
from hccr.charset import Charset
from hccr.preprocess import EmptyImageError, NormConfig, normalize
from hccr.trajectory import TrajectoryConfig, normalize_points

Perturb = Callable[
    [styles.StrokeTemplate, np.random.Generator], tuple[list[np.ndarray], list[np.ndarray]]
]
SPLITS = {"train": 0, "val": 1}  # part of every sample's seed: the splits never share a stream
FONT_PX = 80  # font glyphs are rendered at this pixel size, then warped onto the canvas
HANDWRITING_FONT_WEIGHT = 3.0  # Kai faces are drawn this much more often than print faces
_MAX_TRIES = 8
FEATURES = ("fonts", "cursive", "ink", "layout")
# `layout` is opt-in: in the generator ablation (BENCHMARKS.md) it moved the many-writer scans by
# +0.2 to +1.6 pt, writer 001 by -1.5 to -0.1 pt (image) and +1.3 pt (online): within the intervals
DEFAULT_FEATURES = ("fonts", "cursive", "ink")


class SynthError(ValueError):
    """A synthesis request that cannot be met (bad style spec, uncoverable characters)."""


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; recorded in the LMDB metadata."""

    per_char: int = 100
    seed: int = 0
    split: str = "train"
    styles: dict[str, float] = field(default_factory=lambda: dict(styles.DEFAULT_STYLE_WEIGHTS))
    norm: NormConfig = field(default_factory=NormConfig)
    # the generator's parts (FEATURES): handwriting fonts, stroke variation fitted to a real
    # writer (off: the hand-set one of data_tools/handset.py), ink matched to scans (off: the
    # plain ink), a writer's part layout and shape (data_tools/layout.py; off by default)
    features: tuple[str, ...] = DEFAULT_FEATURES
    # set: samples are pen trajectories (normalised points, `--input strokes`), not images;
    # only the `strokes` style has a pen, so it must be the only style
    trajectory: TrajectoryConfig | None = None

    def __post_init__(self) -> None:
        if self.trajectory is not None and set(self.styles) != {"strokes"}:
            others = ", ".join(sorted(set(self.styles) - {"strokes"}))
            raise SynthError(
                f"--input strokes: only the strokes style makes pen trajectories; drop {others} "
                "(--styles strokes)"
            )


def parse_features(spec: str) -> tuple[str, ...]:
    """`default`, `all`, `none` or a comma list of FEATURES -> the enabled features, in
    FEATURES order."""
    if spec.strip() in ("default", ""):
        return DEFAULT_FEATURES
    if spec.strip() == "all":
        return FEATURES
    names = set() if spec.strip() == "none" else {p.strip() for p in spec.split(",") if p.strip()}
    bad = names - set(FEATURES)
    if bad:
        raise SynthError(f"unknown feature {sorted(bad)[0]!r}; known: {', '.join(FEATURES)}")
    return tuple(f for f in FEATURES if f in names)


def parse_styles(spec: str) -> dict[str, float]:
    """`strokes=0.6,font=0.25,skeleton=0.15` (or `strokes`) -> normalised weights."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        if name not in styles.STYLES:
            raise SynthError(f"unknown style {name!r}; known: {', '.join(styles.STYLES)}")
        try:
            weights[name] = float(value) if value else 1.0
        except ValueError:
            raise SynthError(f"style weight {value!r} for {name} is not a number") from None
    total = sum(weights.values())
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise SynthError(f"style weights {spec!r} must be >= 0 and not all 0")
    return {k: v / total for k, v in weights.items() if v > 0}


def usable_faces(faces: Sequence[FontFace], cfg: SynthConfig) -> list[FontFace]:
    """The faces a run may draw from: without the `fonts` feature, no handwriting font."""
    return [f for f in faces if "fonts" in cfg.features or not f.handwriting]


def sample_rng(seed: int, split: str, class_index: int, sample_index: int) -> np.random.Generator:
    """The generator of one sample: depends on nothing but these four numbers."""
    return np.random.default_rng([seed, SPLITS[split], class_index, sample_index])


class SampleMaker:
    """Makes samples of one class at a time; keeps the class's glyphs and skeletons cached."""

    def __init__(self, faces: Sequence[FontFace], cfg: SynthConfig) -> None:
        self.cfg = cfg
        self.faces = list(faces)
        perturb = styles.perturb_strokes if "cursive" in cfg.features else handset.perturb_strokes
        self._layout = "layout" in cfg.features
        self._perturb = _laid_out(perturb) if self._layout else perturb
        self._scan_ink = "ink" in cfg.features
        self.medians = load_medians()
        self._fonts: list[GlyphFont] | None = None
        self._char: str | None = None
        self._glyphs: list[tuple[int, np.ndarray]] = []  # (face index, glyph) of the current char
        self._profiles: dict[int, tuple[float, int]] = {}  # face -> thinning profile, on demand
        self._skeletons: dict[int, np.ndarray] = {}
        self._template: styles.StrokeTemplate | None = None
        # (face name, reason in fonts.SKIP_REASONS) of every face that cannot draw the current
        # char: that face is skipped for it, never drawn blank or as tofu
        self.missing: list[tuple[str, str]] = []

    def _use_char(self, ch: str) -> None:
        if ch == self._char:
            return
        if self._fonts is None:
            self._fonts = [_open(face) for face in self.faces]
        self._char, self._glyphs, self._skeletons, self.missing = ch, [], {}, []
        self._profiles = {}
        medians = self.medians.get(ch)
        self._template = (
            styles.StrokeTemplate.from_medians(medians, self.medians.radicals(ch))
            if medians
            else None
        )
        for i, font in enumerate(self._fonts):
            glyph, reason = font.check(ch) if font is not None else (None, "load_error")
            if glyph is None:
                self.missing.append((self.faces[i].name, reason))
            else:
                self._glyphs.append((i, glyph))

    def stroke_template(self, ch: str) -> styles.StrokeTemplate | None:
        """The class's resampled medians (None without stroke data)."""
        self._use_char(ch)
        return self._template

    def available_styles(self, ch: str) -> dict[str, float]:
        self._use_char(ch)
        ok = {
            "strokes": ch in self.medians,
            "font": bool(self._glyphs),
            "skeleton": bool(self._glyphs),
        }
        return {k: w for k, w in self.cfg.styles.items() if ok[k]}

    def make(self, ch: str, rng: np.random.Generator) -> tuple[np.ndarray, str, int]:
        """-> (canvas ink map, style, face index or -1)."""
        weights = self.available_styles(ch)
        if not weights:
            raise SynthError(f"{ch!r} (U+{ord(ch):04X}) has no stroke data and no font has it")
        style = _pick(list(weights), list(weights.values()), rng)
        if style == "strokes":
            ink = styles.render_stroke_sample(
                self._template, rng, perturb=self._perturb, scan_ink=self._scan_ink
            )
            return ink, style, -1
        w = [
            HANDWRITING_FONT_WEIGHT if self.faces[g[0]].is_handwriting else 1.0
            for g in self._glyphs
        ]
        face, glyph = _pick(self._glyphs, w, rng)
        if style == "font":
            if face not in self._profiles:  # skeletonising costs ~3 ms: only for faces drawn
                self._profiles[face] = glyph_styles.thinning_profile(glyph)
            ink = glyph_styles.render_font_sample(
                glyph, self._profiles[face], rng, self._scan_ink, self._layout
            )
            return ink, style, face
        if face not in self._skeletons:
            self._skeletons[face] = glyph_styles.skeleton_of(glyph)
        ink = glyph_styles.render_skeleton_sample(self._skeletons[face], rng, self._layout)
        return ink, style, face

    def make_points(self, ch: str, rng: np.random.Generator) -> list[np.ndarray]:
        """-> the normalised pen points (`hccr.trajectory.normalize_points`) of one perturbed,
        cursively joined stroke sample of `ch` (the `strokes` style's trajectory, not inked)."""
        template = self.stroke_template(ch)
        if template is None:
            raise SynthError(f"{ch!r} (U+{ord(ch):04X}) has no stroke data")
        strokes, _ = self._perturb(template, rng)
        return normalize_points(strokes, self.cfg.trajectory)  # type: ignore[arg-type]

    def make_normalized(
        self, ch: str, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, str, int]:
        """-> (normalised (S, S) image, canvas ink, style, face index); never an empty image."""
        for _ in range(_MAX_TRIES):
            ink, style, face = self.make(ch, rng)
            try:
                return normalize(ink, self.cfg.norm), ink, style, face
            except EmptyImageError:
                continue  # the same rng draws again: still deterministic
        raise SynthError(f"{ch!r}: {_MAX_TRIES} empty samples in a row")


def _laid_out(perturb: Perturb) -> Perturb:
    # the stroke departures, then the parts moved against each other (data_tools/layout.py)
    def perturb_and_lay_out(
        template: styles.StrokeTemplate, rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        strokes, widths = perturb(template, rng)
        # one map over all points, then sliced back into strokes (a call per stroke costs more)
        points = layout.draw_layout(rng).apply(np.concatenate(strokes))
        edges = np.cumsum([0, *map(len, strokes)]).tolist()
        return [points[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)], widths

    return perturb_and_lay_out


def _open(face: FontFace) -> GlyphFont | None:
    try:
        return GlyphFont(face, size=FONT_PX)
    except OSError:  # counted as `load_error` for every character, the run goes on
        return None


def _pick(items: list, weights: list[float], rng: np.random.Generator):
    # rng.choice(p=...) costs ~20 us; a cumulative sum and one uniform draw do the same
    cum = np.cumsum(weights)
    return items[
        min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(items) - 1)
    ]


def writer_id(style: str, face: int) -> int:
    """The LMDB writer field: style * 1000 + font face index (999 for stroke data)."""
    return styles.STYLES.index(style) * 1000 + (face if face >= 0 else 999)


def preview_sheet(
    charset: Charset,
    faces: Sequence[FontFace],
    cfg: SynthConfig,
    count: int = 128,
    columns: int = 16,
) -> np.ndarray:
    """A contact sheet of `count` random samples (dark ink on white), one row per 16."""
    maker = SampleMaker(usable_faces(faces, cfg), cfg)
    pick = np.random.default_rng([cfg.seed, SPLITS[cfg.split], 1 << 30])
    tiles = []
    for k in range(count):
        i = int(pick.integers(len(charset)))
        image = maker.make_normalized(
            charset.char(i), sample_rng(cfg.seed, cfg.split, i, 1_000_000 + k)
        )[0]
        tiles.append(image)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    sheet = 255 - np.concatenate(rows, axis=0)
    sheet[:: cfg.norm.size, :] = 200  # faint grid lines between tiles
    sheet[:, :: cfg.norm.size] = 200
    return sheet
