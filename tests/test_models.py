"""The bundles shipped in models/: loadable, described correctly, and they read clean pen strokes."""

from __future__ import annotations

import pytest

from data_tools.render import render_strokes
from data_tools.strokes import load_medians
from hccr.bundle import DEFAULT_MODEL, MODELS_DIR, is_bundle, load_bundle, resolve_model
from hccr.charset import Charset
from hccr.preprocess import NormConfig
from hccr.recognizer import Recognizer

SHIPPED = sorted(p for p in MODELS_DIR.iterdir() if is_bundle(p)) if MODELS_DIR.is_dir() else []
# common characters of many shapes; drawn as clean medians with a round pen, as on the canvas
PROBE = "永的是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学"


def test_make_demo_default_bundle_exists():
    assert is_bundle(MODELS_DIR / DEFAULT_MODEL)
    assert resolve_model(None) == MODELS_DIR / DEFAULT_MODEL


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_bundle_loads_with_gb1_and_64px_moment_norm(path):
    bundle = load_bundle(path)
    assert bundle.charset == Charset.gb1()
    assert bundle.norm == NormConfig(size=64, method="moment")
    for name in ("README.md", "charset.txt", "weights.pt", "bundle.json"):
        assert (path / name).is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_bundle_recognises_pen_drawn_characters(path):
    rec = Recognizer.from_bundle(path)
    medians = load_medians()
    images = [render_strokes(medians.get(ch), pen_width=0.05, canvas=256) for ch in PROBE]
    results = rec.recognize(images, topk=10)
    top1 = sum(r[0].char == ch for r, ch in zip(results, PROBE, strict=True))
    top10 = sum(ch in [c.char for c in r] for r, ch in zip(results, PROBE, strict=True))
    assert top10 >= 0.9 * len(PROBE), f"{path.name}: {top10}/{len(PROBE)} in the top 10"
    assert top1 >= 0.7 * len(PROBE), f"{path.name}: {top1}/{len(PROBE)} top-1"
