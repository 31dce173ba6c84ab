"""The handwriting panel in headless Chromium: write characters in sequence with the mouse on a
desktop and with a finger on a phone, and check what a person would see.

Ink is read from the canvas' own pixels in the page; strokes are the characters' stroke medians,
jittered like a hand (global slant and scale, per-stroke shift, wobble) and sent as mouse or
touch events at mouse-event spacing.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import char_strokes, jitter_strokes

from hccr.adapt import WriterProfile

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
INK_JS = """() => {
  const c = document.querySelector('#hccr-sheet');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
  return n;
}"""
SETTLED_JS = """() => {
  const r = document.querySelector('.hccr-root');
  return r.dataset.ready === '1' && r.dataset.shown === r.dataset.seq;
}"""
# Delays the reply to chosen requests (window.hccrDelay[seq] = ms), to test stale replies.
DELAY_JS = """
window.hccrDelay = {};
const realFetch = window.fetch;
window.fetch = async function (input, init) {
  const url = typeof input === 'string' ? input : input.url;
  let ms = 0;
  if (url.includes('component_server') && init && typeof init.body === 'string') {
    ms = window.hccrDelay[JSON.parse(init.body).data.seq] || 0;
  }
  const reply = await realFetch.call(this, input, init);
  if (ms) await new Promise((done) => setTimeout(done, ms));
  return reply;
};
"""


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not installed ({CHROMIUM}); `.ci/run` installs it from Debian")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def hand_points(ch: str, box: dict, seed: int, spacing: float = 6.0) -> list[np.ndarray]:
    """`ch`'s strokes as a hand moves a pointer over the sheet: page CSS px, one row per event."""
    rng = np.random.default_rng(seed)
    side = 0.7 * box["width"]
    x0 = box["x"] + 0.15 * box["width"]
    y0 = box["y"] + 0.15 * box["height"]
    out = []
    for s in jitter_strokes(char_strokes(ch), rng):
        p = np.clip(s, 0.02, 0.98) * side + (x0, y0)
        seg = np.hypot(*np.diff(p, axis=0).T)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        at = np.append(np.arange(0, arc[-1], spacing), arc[-1])
        q = np.stack([np.interp(at, arc, p[:, i]) for i in (0, 1)], axis=1)
        out.append(q + rng.normal(0, 0.4, q.shape))
    return out


def draw_mouse(page, ch: str, seed: int) -> None:
    for q in hand_points(ch, page.locator("#hccr-sheet").bounding_box(), seed):
        page.mouse.move(float(q[0, 0]), float(q[0, 1]))
        page.mouse.down()
        for x, y in q[1:]:
            page.mouse.move(float(x), float(y))
        page.mouse.up()
        page.wait_for_timeout(40)


def draw_touch(page, cdp, ch: str, seed: int) -> None:
    """A finger: CDP touch events, which Chromium turns into touch and pointer events."""
    for q in hand_points(ch, page.locator("#hccr-sheet").bounding_box(), seed):
        send = lambda kind, pts: cdp.send(  # noqa: E731
            "Input.dispatchTouchEvent",
            {"type": kind, "touchPoints": [{"x": float(x), "y": float(y)} for x, y in pts]},
        )
        send("touchStart", q[:1])
        for point in q[1:]:
            send("touchMove", [point])
        send("touchEnd", [])
        page.wait_for_timeout(40)


def settle(page) -> None:
    page.wait_for_function(SETTLED_JS, timeout=20_000)


def candidates(page) -> list[str]:
    return page.locator("#hccr-candidates button").all_inner_texts()


def ink(page) -> int:
    return page.evaluate(INK_JS)


def open_panel(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".hccr-root[data-ready='1']", timeout=30_000)


def test_desktop_writes_characters_in_sequence(browser, served_demo, tmp_path: Path) -> None:
    url, _ = served_demo
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    page = context.new_page()
    page.add_init_script(DELAY_JS)
    open_panel(page, url)
    text = page.locator("#hccr-text")

    # 1. eight characters in a row, each recognised, each clear leaving a blank sheet
    written = ""
    clears = ["button", "pick", "escape"]
    for i, ch in enumerate("十口日山水大中人"):
        assert ink(page) == 0
        draw_mouse(page, ch, seed=i)
        settle(page)
        assert ink(page) > 500
        assert candidates(page)[0] == ch, f"character {i + 1}: {candidates(page)}"
        how = clears[i % 3]
        if how == "button":
            page.locator("#hccr-clear").click()
        elif how == "escape":
            page.keyboard.press("Escape")
        else:  # pick and continue: the candidate, named by its character, appends and clears
            page.get_by_role("button", name=ch, exact=True).click()
            written += ch
        settle(page)
        assert ink(page) == 0, f"ink left on the sheet after clearing {ch} ({how})"
        assert candidates(page) == []
        assert text.input_value() == written
    page.screenshot(path=str(tmp_path / "desktop.png"))

    # 5. candidates are buttons named by their character alone; the keyboard picks them too
    draw_mouse(page, "山", seed=20)
    settle(page)
    snapshot = page.locator("#hccr-candidates").aria_snapshot()
    names = re.findall(r'- button "(.*?)"', snapshot)
    assert len(names) == 10 and all(len(n) == 1 for n in names), snapshot
    assert names[0] == "山"
    page.locator("#hccr-candidates button").first.focus()
    page.keyboard.press("Enter")
    settle(page)
    written += "山"
    assert text.input_value() == written and ink(page) == 0

    # 2. the option off: picking appends and keeps the drawing (the old behaviour)
    page.locator("#hccr-pick-clears").uncheck()
    draw_mouse(page, "火", seed=21)
    settle(page)
    page.get_by_role("button", name="火", exact=True).click()
    written += "火"
    assert text.input_value() == written
    assert ink(page) > 500 and candidates(page)[0] == "火"
    page.locator("#hccr-pick-clears").check()
    page.locator("#hccr-clear").click()
    settle(page)
    assert ink(page) == 0

    # 2. undo: a stray stroke over 大, undone by the button, then Ctrl+Z stroke by stroke
    draw_mouse(page, "大", seed=22)
    settle(page)
    whole = ink(page)
    assert candidates(page)[0] == "大"
    box = page.locator("#hccr-sheet").bounding_box()
    page.mouse.move(box["x"] + 30, box["y"] + 30)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 30, box["y"] + 60, steps=20)
    page.mouse.move(box["x"] + 30, box["y"] + box["height"] - 30, steps=20)
    page.mouse.up()
    settle(page)
    assert ink(page) > whole * 1.2
    seq = page.locator(".hccr-root").get_attribute("data-seq")
    page.locator("#hccr-undo").click()
    settle(page)
    assert page.locator(".hccr-root").get_attribute("data-seq") != seq  # recognised again
    assert abs(ink(page) - whole) < 0.03 * whole
    assert candidates(page)[0] == "大"
    before = ink(page)
    page.locator("body").click(position={"x": 5, "y": 5})  # focus off the buttons
    for left in (2, 1, 0):
        page.keyboard.press("Control+z")
        settle(page)
        assert ink(page) < before
        before = ink(page)
        assert (candidates(page) == []) == (left == 0)
    assert ink(page) == 0

    # 3. a reply for an older drawing is never shown: the first stroke's reply comes late
    seq = int(page.locator(".hccr-root").get_attribute("data-seq"))
    page.evaluate(f"window.hccrDelay[{seq + 1}] = 4000")  # > a slow drawing of 十
    draw_mouse(page, "十", seed=23)
    settle(page)
    page.wait_for_function(
        f"() => window.hccrTimings.some(t => t.seq === {seq + 1} && t.dropped)", timeout=20_000
    )
    assert page.locator(".hccr-root").get_attribute("data-shown") == str(seq + 2)
    assert candidates(page)[0] == "十"
    timings = page.evaluate("window.hccrTimings")
    assert all(t["strokes"] >= 1 for t in timings)

    # 5. the text is copied in one click
    page.locator("#hccr-copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == written

    # issue 23: the 5 picks so far taught the page; 5 more adapt it, and it says so
    adapt = page.locator("#hccr-adapt-status")
    page.wait_for_function("() => document.querySelector('.hccr-root').dataset.picks === '5'")
    assert "5 of 10" in adapt.inner_text()
    assert page.locator("#hccr-profile-download").is_disabled()
    for i, ch in enumerate("口日山水大"):
        draw_mouse(page, ch, seed=30 + i)
        settle(page)
        page.locator("#hccr-candidates button").first.click()
    page.wait_for_function("() => document.querySelector('.hccr-root').dataset.adapted === '10'")
    assert adapt.inner_text() == "Adapted to your hand: 10 characters."
    with page.expect_download() as download:
        page.locator("#hccr-profile-download").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert WriterProfile.from_bytes(saved.read_bytes(), str(saved)).num_samples == 10
    page.locator("#hccr-adapt-reset").click()
    page.wait_for_function("() => document.querySelector('.hccr-root').dataset.adapted === '0'")
    assert page.locator("#hccr-profile-download").is_disabled()
    page.locator("#hccr-profile-file").set_input_files(str(saved))
    page.wait_for_function("() => document.querySelector('.hccr-root').dataset.adapted === '10'")
    assert "(uploaded profile)" in adapt.inner_text()
    context.close()


def test_phone_writes_with_a_finger(browser, served_demo, tmp_path: Path) -> None:
    url, _ = served_demo
    width, height = 390, 844
    context = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    open_panel(page, url)
    layout = """() => {
      const sheet = document.querySelector('#hccr-sheet');
      const r = sheet.getBoundingClientRect();
      return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
              scrollY: window.scrollY, zoom: window.visualViewport.scale,
              sheet: [r.left, r.top, r.width, r.height], bitmap: sheet.width,
              dpr: window.devicePixelRatio};
    }"""
    before = page.evaluate(layout)
    assert before["scrollWidth"] <= width, "the page scrolls sideways"
    left, top, w, h = before["sheet"]
    assert w >= 0.9 * width and left >= 0 and left + w <= width, before
    assert before["zoom"] == 1 and abs(before["bitmap"] - w * before["dpr"]) <= 2, before

    text = page.locator("#hccr-text")
    for i, ch in enumerate("十口山"):
        draw_touch(page, cdp, ch, seed=40 + i)
        settle(page)
        assert candidates(page)[0] == ch
        after = page.evaluate(layout)
        assert after["scrollY"] == before["scrollY"], "drawing scrolled the page"
        # every candidate and the whole sheet on screen together, each a comfortable tap target
        boxes = [b.bounding_box() for b in page.locator("#hccr-candidates button").all()]
        assert len(boxes) == 10
        for b in boxes:
            assert b["width"] >= 44 and b["height"] >= 44, b
            assert 0 <= b["y"] and b["y"] + b["height"] <= height, b
            assert 0 <= b["x"] and b["x"] + b["width"] <= width, b
        assert top + h <= height, "the sheet runs below the screen"
        if i == 0:
            page.screenshot(path=str(tmp_path / "phone.png"))
        top1 = boxes[0]
        page.touchscreen.tap(top1["x"] + top1["width"] / 2, top1["y"] + top1["height"] / 2)
        settle(page)
        assert ink(page) == 0
    assert text.input_value() == "十口山"
    assert page.evaluate(layout)["scrollWidth"] <= width
    context.close()
