"""The panel with an online (trajectory) bundle: picked in the model list, it answers each
pen-up from the points the panel sends (nothing inked); the image bundle stays the default."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from test_demo_browser import browser, candidates, draw_mouse, open_panel, settle  # noqa: F401
from tiny_bundle import char_strokes

from demo.recognition import CANVAS_SIDE, DrawingError, recognize_strokes, recognize_upload
from hccr.recognizer import Recognizer


def panel_strokes(ch: str) -> list[list[float]]:
    """`ch` as the panel sends it: flat [x0, y0, x1, y1, ...] lists in sheet pixels."""
    return [(s * 0.7 * CANVAS_SIDE + 60).round().ravel().tolist() for s in char_strokes(ch)]


def test_online_bundle_answers_the_panels_strokes(tiny_online_bundle_path, tmp_path):
    rec = Recognizer.from_bundle(tiny_online_bundle_path)
    for ch in "口水大":
        result = recognize_strokes(rec, panel_strokes(ch))
        assert result.candidates[0].char == ch
        assert result.prepared.shape == (9, 32, 32)  # the trajectory maps, not a picture
    assert recognize_strokes(rec, []).candidates == []
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), np.uint8)).save(image)
    with pytest.raises(DrawingError, match="online model"):
        recognize_upload(rec, image)


@pytest.fixture(scope="module")
def served_online_demo(tiny_bundle_path: Path, tiny_online_bundle_path: Path) -> Iterator[str]:
    """The demo over the tiny image bundle, with the online bundle in its model picker."""
    import torch

    from demo.app import build_demo, launch
    from demo.recognition import upload_folder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    saved = os.environ.pop("GRADIO_TEMP_DIR", None)
    try:
        with upload_folder():
            first = Recognizer.from_bundle(tiny_bundle_path)
            demo = build_demo(
                first, bundles={tiny_online_bundle_path.name: tiny_online_bundle_path}
            )
            port = free_port()
            launch(demo, port=port, block=False)
            try:
                yield f"http://127.0.0.1:{port}/"
            finally:
                demo.close()
    finally:
        if saved is not None:
            os.environ["GRADIO_TEMP_DIR"] = saved
        torch.set_num_threads(threads)


@pytest.mark.browser
def test_panel_recognises_with_the_online_bundle(browser, served_online_demo):  # noqa: F811
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    open_panel(page, served_online_demo)
    picker = page.locator("#hccr-model")
    assert picker.input_value() == "tiny10"  # the image bundle is the default
    picker.select_option("tiny10-online")
    for i, ch in enumerate("十口水"):
        draw_mouse(page, ch, seed=40 + i)
        settle(page)
        assert candidates(page)[0] == ch, f"{ch}: {candidates(page)}"
        assert "tiny10-online" in page.locator("#hccr-status").inner_text()
        page.locator("#hccr-clear").click()
        settle(page)
    page.context.close()
