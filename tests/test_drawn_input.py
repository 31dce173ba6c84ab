"""bench/drawn_input.py: mouse-like drawings on the demo canvas, and the script end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_script import load_bench

from data_tools.render import render_canvas
from data_tools.strokes import load_medians


@pytest.fixture(scope="module")
def drawn_input():
    return load_bench("drawn_input")


def test_render_canvas_draws_in_place_with_the_brush_width():
    ink = render_canvas([np.array([[100, 200], [300, 200]])], side=400, brush_radius=7)
    assert ink.shape == (400, 400)
    assert ink[200, 200] == 255 and ink[195, 200] == 255  # inside the 14 px wide line
    assert ink[215, 200] == 0 and ink[200, 50] == 0  # not fitted or centred: nothing elsewhere


def test_mouse_strokes_are_seeded_pixel_points_on_the_canvas(drawn_input):
    medians = load_medians().get("永")
    a = drawn_input.mouse_strokes(medians, np.random.default_rng([1234, 7]), 400, 7)
    b = drawn_input.mouse_strokes(medians, np.random.default_rng([1234, 7]), 400, 7)
    c = drawn_input.mouse_strokes(medians, np.random.default_rng([1234, 8]), 400, 7)
    assert len(a) == len(medians)  # one mouse stroke per pen stroke, in writing order
    points = np.concatenate(a)
    assert points.dtype == np.int32 and points.min() >= 7 and points.max() <= 400 - 7
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.slow
def test_script_scores_a_bundle_and_writes_json(drawn_input, tiny_bundle_path, tmp_path):
    out = tmp_path / "drawn.json"
    images = tmp_path / "images"
    argv = [
        "--models",
        str(tiny_bundle_path),
        "--limit",
        "4",
        "--peers",
        "rapidocr",
        "--json",
        str(out),
        "--save-images",
        str(images),
        "--num-images",
        "2",
    ]
    assert drawn_input.main(argv) == 0
    result = json.loads(out.read_text())
    (row,) = result["models"]
    assert result["classes"] == row["n"] == 4
    assert 0 <= row["top1"] <= row["top10"] <= 1 and row["ms_per_char"] > 0
    assert result["settings"]["seed"] == 1234
    peer = result["peers"]["rapidocr"]  # run in a subprocess; "skipped" where not installed
    assert "skipped" in peer or peer["n"] == 4
    assert len(list(images.glob("*.png"))) == 4  # 2 drawings + what the model sees of each
