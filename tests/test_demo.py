"""The drawing demo: handler behaviour, the Gradio API, and a real browser drawing with the mouse."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_bundle import char_strokes

from data_tools.render import render_strokes
from demo.app import (
    EMPTY_STATUS,
    build_demo,
    canvas_image,
    load_for_demo,
    recognize_drawing,
)
from hccr.recognizer import Recognizer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def _sketch(ch: str, side: int = 400) -> dict:
    """What the Sketchpad hands the handler: RGBA, black ink, transparent background."""
    ink = render_strokes(char_strokes(ch), pen_width=0.035, canvas=side)
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[..., 3] = ink
    return {"background": None, "layers": [rgba], "composite": rgba}


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"background": None, "layers": [], "composite": None},
        {"background": None, "layers": [], "composite": np.zeros((400, 400, 4), np.uint8)},
        {"background": None, "layers": [], "composite": np.full((400, 400, 4), 255, np.uint8)},
    ],
    ids=["none", "no-composite", "transparent", "white"],
)
def test_empty_canvas_gives_an_empty_result(tiny_recognizer: Recognizer, value) -> None:
    candidates, preview, status = recognize_drawing(tiny_recognizer, value)
    assert candidates is None
    assert status == EMPTY_STATUS
    assert "hccr-preview" in preview


@pytest.mark.parametrize("ch", ["十", "大", "水"])
def test_drawing_gives_ranked_top10_and_a_preview(tiny_recognizer: Recognizer, ch: str) -> None:
    candidates, preview, status = recognize_drawing(tiny_recognizer, _sketch(ch))
    assert candidates is not None and len(candidates) == 10
    assert max(candidates, key=candidates.get) == ch
    assert "data:image/png;base64," in preview
    assert " ms " in status


def test_canvas_image_takes_the_composite() -> None:
    value = _sketch("口")
    assert canvas_image(value) is value["composite"]
    assert (
        canvas_image({"background": None, "layers": [value["composite"]], "composite": None})
        is (value["composite"])
    )
    assert canvas_image(None) is None


def test_no_bundle_serves_an_untrained_placeholder_with_a_warning(tmp_path, monkeypatch) -> None:
    import hccr.bundle

    monkeypatch.setattr(hccr.bundle, "MODELS_DIR", tmp_path / "models")
    rec, others, warning = load_for_demo(None)
    assert others == {}
    assert warning is not None and "UNTRAINED" in warning and "3755" in warning
    assert len(rec.charset) == 3755
    html = build_demo(rec, warning=warning).get_config_file()
    assert "UNTRAINED" in str(html)


def test_model_picker_lists_every_shipped_bundle(tiny_bundle_path, tmp_path, monkeypatch) -> None:
    import hccr.bundle

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_bundle_path, models / "gb1-student")
    shutil.copytree(tiny_bundle_path, models / "gb1-teacher")
    monkeypatch.setattr(hccr.bundle, "MODELS_DIR", models)
    rec, others, warning = load_for_demo(None)
    assert warning is None
    assert rec.name == "gb1-student"  # the default
    assert list(others) == ["gb1-teacher"]  # offered for comparison, loaded on first use
    config = build_demo(rec, bundles=others).get_config_file()
    dropdowns = [
        c for c in config["components"] if c.get("props", {}).get("elem_id") == "hccr-model"
    ]
    assert dropdowns and dropdowns[0]["props"]["visible"] is True


# --- a served app -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_demo(tiny_bundle_path: Path) -> Iterator[str]:
    """The demo over the tiny bundle, launched on 127.0.0.1 in this process; yields its URL."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `hccr demo` does: one character per request
    rec = Recognizer.from_bundle(tiny_bundle_path)
    demo = build_demo(rec)
    demo.queue(default_concurrency_limit=4)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True,
                quiet=True)  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        torch.set_num_threads(threads)


def test_gradio_client_api_recognizes_a_drawing(served_demo: str, tmp_path: Path) -> None:
    client_mod = pytest.importorskip("gradio_client")
    rgba = _sketch("山")["composite"]
    path = tmp_path / "shan.png"
    Image.fromarray(rgba, "RGBA").save(path)
    client = client_mod.Client(served_demo, verbose=False)
    value = {"background": None, "layers": [], "composite": client_mod.handle_file(str(path))}
    label, preview, status = client.predict(value, api_name="/recognize")
    assert label["label"] == "山"
    assert len(label["confidences"]) == 10
    assert " ms " in status


def _draw(page, box: dict, ch: str) -> None:
    """Draws the strokes of `ch` with the mouse inside the canvas, in writing order."""
    side = 0.6 * min(box["width"], box["height"])  # well inside the drawable square
    x0 = box["x"] + (box["width"] - side) / 2
    y0 = box["y"] + (box["height"] - side) / 2
    for stroke in char_strokes(ch):
        points = [(float(x0 + x * side), float(y0 + y * side)) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for (xa, ya), (xb, yb) in zip(points[:-1], points[1:], strict=True):
            page.mouse.move(xb, yb, steps=max(1, int(np.hypot(xb - xa, yb - ya) / 40)))
        page.mouse.up()
        page.wait_for_timeout(150)


@pytest.mark.browser
def test_browser_drawing_updates_candidates_and_picks_text(served_demo: str, tmp_path: Path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not installed ({CHROMIUM}); `.ci/run` installs it from Debian")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(served_demo)
            canvas = page.locator("#hccr-canvas canvas").first
            canvas.wait_for(timeout=30_000)
            # the app selects the brush itself: no "select the draw tool" hint left
            hint = page.get_by_text("select the draw tool to start")
            hint.wait_for(state="hidden", timeout=10_000)
            box = canvas.bounding_box()
            candidates = page.locator("#hccr-candidates")
            text = page.locator("#hccr-text textarea")

            start = time.perf_counter()
            _draw(page, box, "十")
            candidates.locator('[data-testid="十-confidence-set"]').wait_for(timeout=20_000)
            assert candidates.locator("button.confidence-set").count() == 10
            page.screenshot(path=str(tmp_path / "demo-shi.png"))
            assert "ms" in page.locator("#hccr-status").inner_text()
            assert page.locator("#hccr-preview-img").is_visible()

            candidates.locator('[data-testid="十-confidence-set"]').click()
            sync_api.expect(text).to_have_value("十", timeout=10_000)

            page.locator("#hccr-clear").click()
            sync_api.expect(candidates.locator("button.confidence-set")).to_have_count(0)
            _draw(page, box, "口")
            candidates.locator('[data-testid="口-confidence-set"]').wait_for(timeout=20_000)
            candidates.locator('[data-testid="口-confidence-set"]').click()
            sync_api.expect(text).to_have_value("十口", timeout=10_000)
            page.screenshot(path=str(tmp_path / "demo-text.png"))
            print(f"browser drawing session: {time.perf_counter() - start:.1f} s")
        finally:
            browser.close()
