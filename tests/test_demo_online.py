"""The panel with an online (trajectory) bundle: the default when one ships in models/, it
answers each pen-up from the points the panel sends (nothing inked) and learns the writer's hand
from the picks; an image sent to the demo while it is picked is read by the image bundle."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from PIL import Image
from test_demo import _ink
from test_demo_browser import browser, candidates, draw_mouse, open_panel, settle  # noqa: F401
from tiny_bundle import TINY_CHARS, char_strokes, render_sample

from demo.app import RecognizerPool, build_demo, launch, load_for_demo
from demo.recognition import (
    CANVAS_SIDE,
    DrawingError,
    parse_strokes,
    prepare_drawing,
    recognize_strokes,
    recognize_upload,
    upload_folder,
)
from demo.writer import PageWriters
from hccr.adapt import Adapter, StmConfig
from hccr.recognizer import Recognizer

MIN_PICKS = StmConfig().min_samples


def panel_strokes(ch: str) -> list[list[float]]:
    """`ch` as the panel sends it: flat [x0, y0, x1, y1, ...] lists in sheet pixels."""
    return [(s * 0.7 * CANVAS_SIDE + 60).round().ravel().tolist() for s in char_strokes(ch)]


def make_models(root: Path, bundles: dict[str, Path]) -> Path:
    """A models/ folder holding copies of `bundles` under the given names."""
    models = root / "models"
    models.mkdir(parents=True)
    for name, path in bundles.items():
        shutil.copytree(path, models / name)
    return models


@pytest.fixture(scope="module")
def online_models(
    tiny_bundle_path: Path, tiny_online_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """models/ as it ships: the online bundle and the image student (tiny ones)."""
    root = tmp_path_factory.mktemp("demo-online")
    return make_models(root, {"gb1-online": tiny_online_bundle_path,
                              "gb1-student": tiny_bundle_path})  # fmt: skip


def test_online_bundle_answers_the_panels_strokes(tiny_online_bundle_path, tmp_path):
    rec = Recognizer.from_bundle(tiny_online_bundle_path)
    for ch in "口水大":
        result = recognize_strokes(rec, panel_strokes(ch))
        assert result.candidates[0].char == ch
        assert result.prepared.shape == (9, 32, 32)  # the trajectory maps, not a picture
    assert recognize_strokes(rec, []).candidates == []
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(image)
    with pytest.raises(DrawingError, match="online model"):
        recognize_upload(rec, image)


def test_online_picks_are_samples_of_the_trajectory_maps(tiny_online_bundle_path) -> None:
    """A pick on an online model is one sample of its (9, S, S) maps, and they adapt it."""
    rec = Recognizer.from_bundle(tiny_online_bundle_path)
    adapter = Adapter(rec)
    one = prepare_drawing(rec, parse_strokes(panel_strokes("口")))
    adapter.add(one, "口")  # one sample, not nine ink maps
    adapter.add(np.stack([one, one]), ["口", "口"])
    assert adapter.num_samples == 3
    writers = PageWriters()
    for k in range(MIN_PICKS):
        ch = TINY_CHARS[k % len(TINY_CHARS)]
        state = writers.pick(
            "page-online-01", rec, prepare_drawing(rec, parse_strokes(panel_strokes(ch))), ch
        )
    assert state.picks == MIN_PICKS and state.profile is not None
    assert state.profile.feat_dim == rec.feat_dim


def test_the_default_is_the_online_bundle_when_it_ships(
    tiny_bundle_path, tiny_online_bundle_path, tmp_path, monkeypatch
) -> None:
    import hccr.bundle

    both = make_models(tmp_path / "both", {"gb1-online": tiny_online_bundle_path,
                                           "a-image": tiny_bundle_path,
                                           "gb1-student": tiny_bundle_path})  # fmt: skip
    monkeypatch.setattr(hccr.bundle, "MODELS_DIR", both)
    rec, others, warning = load_for_demo(None)
    assert warning is None and rec.name == "gb1-online" and rec.input_kind == "strokes"
    # the image student next: it reads images while the online bundle is picked
    assert list(others) == ["gb1-student", "a-image"]
    pool = RecognizerPool(rec, others)
    assert pool.for_image(None).name == pool.for_image("gb1-online").name == "gb1-student"
    assert pool.for_image("a-image").name == "a-image"  # an image model picked reads it itself
    # an online bundle alone: an image is the upload's one-line error, not a crash
    alone = RecognizerPool(rec).for_image(None)
    with pytest.raises(DrawingError, match="online model"):
        recognize_upload(alone, _png(tmp_path / "a.png", "口"))

    image_only = make_models(tmp_path / "image", {"gb1-student": tiny_bundle_path})
    monkeypatch.setattr(hccr.bundle, "MODELS_DIR", image_only)
    rec, others, warning = load_for_demo(None)
    assert warning is None and rec.name == "gb1-student" and others == {}
    # named explicitly: that one first, the others by name
    monkeypatch.setattr(hccr.bundle, "MODELS_DIR", both)
    rec, others, _ = load_for_demo("gb1-student")
    assert rec.name == "gb1-student" and list(others) == ["a-image", "gb1-online"]


def _png(path: Path, ch: str) -> Path:
    Image.fromarray(255 - _ink(ch)).save(path)
    return path


@pytest.fixture(scope="module")
def served_online_demo(online_models: Path) -> Iterator[tuple[str, Path]]:
    """The demo as `hccr demo` serves it from `online_models`; yields (URL, upload folder)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    saved = os.environ.pop("GRADIO_TEMP_DIR", None)
    try:
        with pytest.MonkeyPatch.context() as mp, upload_folder() as folder:
            import hccr.bundle

            mp.setattr(hccr.bundle, "MODELS_DIR", online_models)
            first, others, _ = load_for_demo(None)
            demo = build_demo(first, bundles=others)
            port = free_port()
            launch(demo, port=port, block=False)
            try:
                yield f"http://127.0.0.1:{port}/", folder
            finally:
                demo.close()
    finally:
        if saved is not None:
            os.environ["GRADIO_TEMP_DIR"] = saved
        torch.set_num_threads(threads)


def test_an_image_with_the_online_bundle_picked_is_read_by_the_image_bundle(
    served_online_demo, tmp_path
) -> None:
    client_mod = pytest.importorskip("gradio_client")
    url, folder = served_online_demo
    client = client_mod.Client(url, verbose=False)
    for ch in "十山":
        image = client_mod.handle_file(str(_png(tmp_path / f"{ord(ch)}.png", ch)))
        out = client.predict(image, "gb1-online", api_name="/recognize")
        assert out["candidates"][0]["char"] == ch
        assert out["model"] == "gb1-student" and "by gb1-student" in out["status"]
        assert out["note"].startswith("gb1-online reads pen strokes")
        out = client.predict(image, "gb1-student", api_name="/recognize")
        assert out["model"] == "gb1-student" and "note" not in out
    time.sleep(0.5)  # Gradio moves uploads into place in a background task
    assert [p for p in folder.rglob("*") if p.is_file()] == []


@pytest.mark.browser
def test_panel_starts_on_the_online_bundle(browser, served_online_demo):  # noqa: F811
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    open_panel(page, served_online_demo[0])
    picker = page.locator("#hccr-model")
    assert picker.input_value() == "gb1-online"  # the default, first in the picker
    assert page.locator("#hccr-model option").all_inner_texts() == ["gb1-online", "gb1-student"]
    for i, ch in enumerate("十口水"):
        draw_mouse(page, ch, seed=40 + i)
        settle(page)
        assert candidates(page)[0] == ch, f"{ch}: {candidates(page)}"
        assert "by gb1-online" in page.locator("#hccr-status").inner_text()
        page.locator("#hccr-clear").click()
        settle(page)
    picker.select_option("gb1-student")
    draw_mouse(page, "山", seed=43)
    settle(page)
    assert candidates(page)[0] == "山"
    assert "by gb1-student" in page.locator("#hccr-status").inner_text()
    page.context.close()


PROBS_JS = "bs => bs.map(b => [b.textContent, b.dataset.prob])"


def shown(page) -> list[list[str]]:
    """The candidates on the page with their probabilities, best first."""
    return page.locator("#hccr-candidates button").evaluate_all(PROBS_JS)


def wait_adapted(page, characters: int) -> None:
    page.wait_for_function(
        f"() => document.querySelector('.hccr-root').dataset.adapted === '{characters}'"
    )


def image_profile(tiny_bundle_path: Path, out: Path) -> Path:
    """A writer profile fitted on the image student, as `hccr adapt gb1-student` makes one."""
    rec = Recognizer.from_bundle(tiny_bundle_path)
    adapter = Adapter(rec)
    rng = np.random.default_rng(5)
    for k in range(MIN_PICKS):
        ch = TINY_CHARS[k % len(TINY_CHARS)]
        adapter.add(rec.prepare(255 - render_sample(ch, rng))[None], [ch])
    return adapter.fit().save(out)


@pytest.mark.browser
def test_online_page_adapts_and_its_profile_downloads_resets_and_uploads(
    browser,  # noqa: F811
    served_online_demo,
    tiny_bundle_path,
    tmp_path,
) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    open_panel(page, served_online_demo[0])
    assert page.locator("#hccr-model").input_value() == "gb1-online"
    adapt = page.locator("#hccr-adapt-status")
    probe = ("火", 99)  # the same drawing each time: the same points reach the server
    draw_mouse(page, *probe)
    settle(page)
    plain = shown(page)
    page.locator("#hccr-clear").click()
    settle(page)

    # picks teach the page the hand: each one the character drawn (a correction or not)
    for i in range(MIN_PICKS):
        ch = TINY_CHARS[i % len(TINY_CHARS)]
        draw_mouse(page, ch, seed=60 + i)
        settle(page)
        page.get_by_role("button", name=ch, exact=True).click()
        settle(page)
    wait_adapted(page, MIN_PICKS)
    assert adapt.inner_text() == f"Adapted to your hand: {MIN_PICKS} characters."
    draw_mouse(page, *probe)
    settle(page)
    adapted = shown(page)
    assert [c for c, _ in adapted][0] == "火" and adapted != plain

    with page.expect_download() as download:
        page.locator("#hccr-profile-download").click()
    assert download.value.suggested_filename == "gb1-online-my-hand.profile"
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)

    # reset: back to the plain model, the drawing on the sheet recognised as before
    page.locator("#hccr-adapt-reset").click()
    wait_adapted(page, 0)
    settle(page)
    assert adapt.inner_text().startswith("Each pick teaches the model your hand")
    assert page.locator("#hccr-profile-download").is_disabled()
    assert shown(page) == plain

    # the downloaded profile uploaded again: adapted as before the reset
    page.locator("#hccr-profile-file").set_input_files(str(saved))
    wait_adapted(page, MIN_PICKS)
    settle(page)
    assert adapt.inner_text() == f"Adapted to your hand: {MIN_PICKS} characters (uploaded profile)."
    assert shown(page) == adapted

    # a profile made on the image student is refused while the online bundle is picked
    foreign = image_profile(tiny_bundle_path, tmp_path / "student.profile")
    page.locator("#hccr-profile-file").set_input_files(str(foreign))
    page.wait_for_function(
        "() => document.querySelector('#hccr-adapt-status').classList.contains('hccr-error')"
    )
    error = adapt.inner_text()
    assert error.startswith("student.profile: made for other weights"), error
    assert "\n" not in error
    settle(page)  # the sheet recognised again: still with the profile uploaded before
    assert shown(page) == adapted
    page.context.close()
