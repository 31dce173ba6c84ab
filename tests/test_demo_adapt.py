"""Writer adaptation in the demo (demo/writer.py): picks teach each page its writer's hand.

Driven over HTTP as the panel drives it (Gradio's /component_server, one call per pick), with
two pages side by side; the fixtures are made here, no real data.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import TINY_CHARS, char_strokes

from demo.panel import PANEL_ID
from demo.recognition import CANVAS_SIDE, strokes_image
from demo.writer import MAX_PAGES, PageWriters
from hccr.adapt import Adapter, StmConfig, WriterProfile, charset_sha256
from hccr.recognizer import Recognizer

MIN_PICKS = StmConfig().min_samples  # Adapter fits from this many picks on


def writer_strokes(ch: str, k: int) -> list[list[int]]:
    """`ch` on the sheet in one writer's slanted hand (a shear, varying a little with k)."""
    shear = 0.45 + 0.05 * (k % 3)
    out = []
    for s in char_strokes(ch):
        x = s[:, 0] + shear * (s[:, 1] - 0.5)
        xy = np.stack([x, s[:, 1]], 1) * (CANVAS_SIDE - 160) + 80
        out.append(np.rint(np.clip(xy, 0, CANVAS_SIDE - 1)).astype(int).ravel().tolist())
    return out


class Panel:
    """One page of the served demo, calling the panel's server functions as panel.js does."""

    def __init__(self, url: str, session: str) -> None:
        self.url, self.session = url, session
        with urllib.request.urlopen(url + "config", timeout=30) as r:
            config = json.load(r)
        ids = [c["id"] for c in config["components"]
               if c.get("props", {}).get("elem_id") == PANEL_ID]  # fmt: skip
        assert len(ids) == 1
        self.component = ids[0]

    def call(self, fn: str, **data) -> dict:
        body = json.dumps({"session_hash": "gradio-" + self.session, "component_id": self.component,
                           "fn_name": fn, "data": {"session": self.session, **data}}).encode()  # fmt: skip
        req = urllib.request.Request(self.url + "gradio_api/component_server", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def recognize(self, strokes: list[list[int]]) -> dict:
        return self.call("recognize_strokes", seq=1, strokes=strokes)

    def pick(self, ch: str, k: int) -> dict:
        return self.call("pick", strokes=writer_strokes(ch, k), char=ch)


def picks(n: int) -> list[tuple[str, int]]:
    return [(TINY_CHARS[i % len(TINY_CHARS)], i) for i in range(n)]


def expected_profile(rec: Recognizer, samples: list[tuple[str, int]]) -> WriterProfile:
    """The profile the same picks give through the library directly."""
    adapter = Adapter(rec)
    for ch, k in samples:
        strokes = [np.asarray(s, float).reshape(-1, 2) for s in writer_strokes(ch, k)]
        adapter.add(rec.prepare(strokes_image(strokes))[None], [ch])
    return adapter.fit()


def probs(reply: dict) -> dict[str, float]:
    return {c["char"]: c["prob"] for c in reply["candidates"]}


def test_picks_adapt_this_page_only_and_reset_forgets(served_demo, tiny_recognizer) -> None:
    url, _ = served_demo
    me, other = Panel(url, "page-me-0001"), Panel(url, "page-other-0002")
    probe = writer_strokes("火", 7)
    plain = me.recognize(probe)
    assert plain["adapted"] is False
    samples = picks(MIN_PICKS + 3)

    for i, (ch, k) in enumerate(samples[: MIN_PICKS - 1]):
        out = me.pick(ch, k)["adapt"]
        assert out["picks"] == i + 1 and not out["adapted"]
    assert "9 of 10" in out["text"]
    assert me.recognize(probe)["candidates"] == plain["candidates"]  # not adapted yet

    out = me.pick(*samples[MIN_PICKS - 1])["adapt"]
    assert out["adapted"] and out["characters"] == MIN_PICKS
    assert out["text"] == f"Adapted to your hand: {MIN_PICKS} characters."
    adapted = me.recognize(probe)
    assert adapted["adapted"] is True
    # the session's profile is the one the library fits from the same picks ...
    strokes = [np.asarray(s, float).reshape(-1, 2) for s in probe]
    prepared = tiny_recognizer.prepare(strokes_image(strokes))[None]
    want = tiny_recognizer.recognize_prepared(
        prepared, 10, profile=expected_profile(tiny_recognizer, samples[:MIN_PICKS])
    )[0]
    got = probs(adapted)
    assert [c.char for c in want] == list(got)
    np.testing.assert_allclose([got[c.char] for c in want], [c.prob for c in want], atol=1e-4)
    # ... and it changes the answer's probabilities
    diff = max(abs(got[c] - p) for c, p in probs(plain).items() if c in got)
    assert diff > 1e-3

    # the other page has learnt nothing and recognises as before
    assert other.call("adapt_status")["adapt"]["picks"] == 0
    assert other.recognize(probe)["candidates"] == plain["candidates"]
    assert other.call("profile_download")["error"].startswith("no profile yet")

    # refitted on every later pick
    for ch, k in samples[MIN_PICKS:]:
        out = me.pick(ch, k)["adapt"]
    assert out["characters"] == len(samples)
    assert probs(me.recognize(probe)) != got

    out = me.call("adapt_reset")["adapt"]
    assert out == {"adapted": False, "characters": 0, "picks": 0, "text": out["text"]}
    assert me.recognize(probe)["candidates"] == plain["candidates"]


def test_profile_downloads_and_uploads_into_another_page(served_demo, tiny_recognizer) -> None:
    url, _ = served_demo
    writer, fresh = Panel(url, "page-writer-0003"), Panel(url, "page-fresh-0004")
    for ch, k in picks(12):
        writer.pick(ch, k)
    probe = writer_strokes("口", 4)
    want = writer.recognize(probe)["candidates"]

    down = writer.call("profile_download")
    assert down["name"] == "tiny10-my-hand.profile"
    data = base64.b64decode(down["data"])
    profile = tiny_recognizer.load_profile(WriterProfile.from_bytes(data, "downloaded"))
    assert profile.num_samples == 12

    assert fresh.recognize(probe)["candidates"] != want
    out = fresh.call("profile_upload", name="mine.profile", data=down["data"])["adapt"]
    assert out["adapted"] and out["characters"] == 12 and "uploaded" in out["text"]
    assert fresh.recognize(probe)["candidates"] == want


def _encoded(profile: WriterProfile) -> str:
    return base64.b64encode(profile.to_bytes()).decode()


@pytest.mark.parametrize("case", ["other-weights", "other-charset", "not-a-profile", "truncated"])
def test_a_foreign_profile_is_refused_with_one_line(served_demo, tiny_recognizer, case) -> None:
    url, _ = served_demo
    page = Panel(url, f"page-foreign-{case}")
    rec = tiny_recognizer
    d = rec.feat_dim
    mine = WriterProfile(A=np.eye(d, dtype=np.float32), b=np.zeros(d, np.float32),
                         weights_sha256=rec.weights_sha256, charset_sha256=charset_sha256(rec.charset),
                         num_classes=len(rec.charset), num_samples=50)  # fmt: skip
    if case == "other-weights":
        mine.weights_sha256 = "0" * 64
        data, message = _encoded(mine), "them.profile: made for other weights"
    elif case == "other-charset":
        mine.charset_sha256, mine.num_classes = "1" * 64, 3755
        data, message = _encoded(mine), "them.profile: made for another charset"
    elif case == "not-a-profile":
        data, message = base64.b64encode(b"hello").decode(), "them.profile: not a writer profile"
    else:
        data = base64.b64encode(mine.to_bytes()[:200]).decode()
        message = "them.profile: not a writer profile"
    out = page.call("profile_upload", name="them.profile", data=data)
    assert out["error"].startswith(message) and "\n" not in out["error"]
    assert page.call("adapt_status")["adapt"]["adapted"] is False


def test_bad_requests_are_refused(served_demo) -> None:
    url, _ = served_demo
    page = Panel(url, "page-bad-0005")
    assert "session" in page.call("pick", session=None, strokes=[[1, 1]], char="十")["error"]
    assert (
        "not in charset" in page.call("pick", strokes=writer_strokes("十", 0), char="永")["error"]
    )
    assert "nothing on the sheet" in page.call("pick", strokes=[], char="十")["error"]
    assert "base64" in page.call("profile_upload", name="x", data="%%%")["error"]
    assert page.call("adapt_status")["adapt"]["picks"] == 0


def test_pages_are_dropped_when_closed_idle_or_too_many(tiny_recognizer) -> None:
    rec = tiny_recognizer
    ink = np.zeros((rec.norm.size, rec.norm.size), np.uint8)
    ink[8:24, 15:17] = 255
    writers = PageWriters(max_pages=3, idle_s=3600)
    for s in "abcd":
        writers.pick(s * 8, rec, ink, "十")
    assert len(writers) == 3 and writers.get("a" * 8, rec, create=False) is None
    writers.drop("b" * 8)
    assert len(writers) == 2 and writers.get("b" * 8, rec, create=False) is None
    writers.idle_s = 0.0
    assert writers.get("c" * 8, rec, create=False) is None and len(writers) == 0
    assert MAX_PAGES >= 16


def test_nothing_is_written_to_disk(served_demo, tmp_path: Path) -> None:
    url, folder = served_demo
    page = Panel(url, "page-disk-0006")
    for ch, k in picks(10):
        page.pick(ch, k)
    down = page.call("profile_download")
    page.call("profile_upload", name="x.profile", data=down["data"])
    assert [p for p in folder.rglob("*") if p.is_file()] == []
