"""Part layout (`data_tools.layout`): parts move as wholes, strokes across the split stay whole,
images get the same map as points, and the font styles keep every stroke on the canvas."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools import glyph_styles
from data_tools.fonts import GlyphFont, MissingFontsError, discover_fonts
from data_tools.layout import Layout, char_shape, draw_layout
from data_tools.styles import CANVAS


def test_each_part_moves_as_a_whole_and_the_split_line_moves() -> None:
    lay = Layout(
        axis=1, cut=0.5, new_cut=0.6, log_scale=(np.log(0.8), np.log(1.2)), shift=(0.05, 0)
    )
    top = np.array([[0.2, 0.1], [0.8, 0.3]])  # x, y: two points well above the split line
    bottom = np.array([[0.2, 0.8], [0.8, 0.9]])
    t, b = lay.apply(top), lay.apply(bottom)
    assert np.allclose(t[1, 0] - t[0, 0], 0.6 * 0.8) and np.allclose(t[:, 0].mean(), 0.55)
    assert np.allclose(b[1, 0] - b[0, 0], 0.6 * 1.2) and np.allclose(b[:, 0].mean(), 0.5)
    # the top part takes 60% of the height, the bottom the rest
    assert np.allclose(lay.apply(np.array([[0.5, 0.5], [0.5, 1.0]]))[:, 1], [0.6, 1.0])
    # a vertical stroke through the split line stays one continuous, ordered stroke
    stroke = np.stack([np.full(200, 0.3), np.linspace(0.0, 1.0, 200)], axis=1)
    moved = lay.apply(stroke)
    assert np.all(np.diff(moved[:, 1]) > 0)
    assert np.abs(np.diff(moved, axis=0)).max() < 0.03


def test_an_image_is_remapped_as_its_points_move() -> None:
    lay = draw_layout(np.random.default_rng(7))
    for axis in (0, 1):
        lay = Layout(axis, lay.cut, lay.new_cut, lay.log_scale, lay.shift)
        mx, my = lay.remap_grid(CANVAS, 9.6, 86.4)
        ys, xs = np.mgrid[0:CANVAS:7, 0:CANVAS:7]
        pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
        expected = lay.apply(pixels, 9.6, 86.4)
        got = np.stack([mx[ys, xs].ravel(), my[ys, xs].ravel()], axis=1)
        assert np.allclose(got, expected, atol=1e-3)


def test_draws_stay_in_range() -> None:
    for s in range(500):
        lay = draw_layout(np.random.default_rng(s))
        assert 0.2 <= lay.new_cut <= 0.8 and lay.axis in (0, 1)
        assert max(map(abs, lay.log_scale)) < 0.5 and max(map(abs, lay.shift)) < 0.1
        a = char_shape(np.random.default_rng(s))
        assert 0.4 < np.linalg.det(a) < 2.5  # a slanted, narrowed character, never collapsed


def _border_ink(ink: np.ndarray) -> int:
    frame = np.ones_like(ink, bool)
    frame[2:-2, 2:-2] = False
    return int((ink[frame] >= 40).sum())


@pytest.mark.parametrize("style", ["font", "skeleton"])
def test_laid_out_glyphs_stay_on_the_canvas(style: str) -> None:
    # A wide shape is shrunk to fit: a laid-out glyph reaches the canvas edge no more often
    # than the plain warp's elastic bend and shift already make it.
    try:
        face = discover_fonts()[0]
    except (MissingFontsError, IndexError):
        pytest.skip("no CJK font installed")
    glyph = GlyphFont(face, size=80).render("葡")  # a wide, many-part character
    profile = glyph_styles.thinning_profile(glyph)
    skeleton = glyph_styles.skeleton_of(glyph)
    edge = {}
    for layout in (False, True):
        edge[layout] = 0
        for s in range(150):
            rng = np.random.default_rng([3, s])
            if style == "font":
                ink = glyph_styles.render_font_sample(glyph, profile, rng, layout=layout)
            else:
                ink = glyph_styles.render_skeleton_sample(skeleton, rng, layout=layout)
            edge[layout] += _border_ink(ink)
            assert (ink > 96).sum() > 100
    assert edge[True] <= edge[False]
