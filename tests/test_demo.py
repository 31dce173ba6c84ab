"""The demo's server side: strokes and uploads in, candidates out; caps, cleanup and the API.

The browser drives the page in tests/test_demo_browser.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from PIL import Image
from tiny_bundle import char_strokes

from data_tools.render import render_canvas
from demo.app import build_demo, load_for_demo
from demo.panel import panel_html
from demo.recognition import (
    BRUSH_RADIUS,
    CANVAS_SIDE,
    EMPTY_STATUS,
    MAX_POINTS,
    MAX_STROKES,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_SIDE,
    DrawingError,
    load_upload,
    recognize_strokes,
    recognize_upload,
    reply,
    upload_folder,
)
from hccr.recognizer import Recognizer

REPO = Path(__file__).resolve().parents[1]


def sheet_strokes(ch: str) -> list[list[int]]:
    """`ch` as the panel sends it: flat integer point lists on the 400 x 400 sheet."""
    return [
        np.rint(60 + s * (CANVAS_SIDE - 120)).astype(int).ravel().tolist() for s in char_strokes(ch)
    ]


def _ink(ch: str) -> np.ndarray:
    strokes = [s * (CANVAS_SIDE - 120) + 60 for s in char_strokes(ch)]
    return render_canvas(strokes, CANVAS_SIDE, BRUSH_RADIUS)


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A black greyscale PNG of any size, written row by row: 13000 x 13000 is ~170 kB."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    comp = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then `width` black pixels
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


@pytest.fixture(scope="session")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("huge")
    return write_blank_png(folder / "huge.png", 13000, 13000)


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


# --- strokes -----------------------------------------------------------------------------------


def test_empty_sheet_gives_no_candidates(tiny_recognizer: Recognizer) -> None:
    result = recognize_strokes(tiny_recognizer, [])
    assert result.candidates == [] and result.prepared is None
    out = reply(result, tiny_recognizer)
    assert out["candidates"] == [] and out["preview"] is None and out["status"] == EMPTY_STATUS


@pytest.mark.parametrize("ch", ["十", "大", "水"])
def test_strokes_give_ranked_top10_and_a_preview(tiny_recognizer: Recognizer, ch: str) -> None:
    out = reply(recognize_strokes(tiny_recognizer, sheet_strokes(ch)), tiny_recognizer, seq=3)
    assert out["seq"] == 3
    assert len(out["candidates"]) == 10
    assert out["candidates"][0]["char"] == ch
    probs = [c["prob"] for c in out["candidates"]]
    assert probs == sorted(probs, reverse=True)
    assert out["preview"].startswith("data:image/png;base64,")
    assert " ms " in out["status"]
    assert out["timing"]["recognition_ms"] > 0


def test_strokes_are_inked_as_the_panel_draws_them(tiny_recognizer: Recognizer) -> None:
    # the same points through the recogniser's own image path give the same input
    result = recognize_strokes(tiny_recognizer, sheet_strokes("山"))
    rgba = np.zeros((CANVAS_SIDE, CANVAS_SIDE, 4), np.uint8)
    rgba[..., 3] = render_canvas(
        [np.asarray(s, float).reshape(-1, 2) for s in sheet_strokes("山")], CANVAS_SIDE,
        BRUSH_RADIUS)  # fmt: skip
    np.testing.assert_array_equal(result.prepared, tiny_recognizer.prepare(rgba))


@pytest.mark.parametrize(
    "strokes, message",
    [
        ("10,10", "must be a list"),
        ([[10, 10, 20]], "non-empty"),
        ([[]], "non-empty"),
        ([["10", "10"]], "numbers"),
        ([[10, True]], "numbers"),
        ([[10.0, float("nan")]], "finite"),
        ([[1, 1]] * (MAX_STROKES + 1), "strokes"),
        ([[1, 1] * (MAX_POINTS + 1)], "points"),
    ],
    ids=["not-a-list", "odd", "empty-stroke", "strings", "bool", "nan", "many-strokes", "many-points"],
)  # fmt: skip
def test_malformed_strokes_are_refused(tiny_recognizer: Recognizer, strokes, message) -> None:
    with pytest.raises(DrawingError, match=message):
        recognize_strokes(tiny_recognizer, strokes)


def test_points_off_the_sheet_are_clamped(tiny_recognizer: Recognizer) -> None:
    result = recognize_strokes(tiny_recognizer, [[-500, 200, 5000, 200]])
    assert result.prepared is not None  # a horizontal line across the sheet, not an error


# --- uploads: caps (issue 25 item 7) and cleanup (item 14) -------------------------------------


def test_oversized_image_is_refused_from_its_header(huge_png: Path) -> None:
    # 13000 x 13000 pixels in ~170 kB: decoding it would take 169 MB (grey) and seconds
    assert huge_png.stat().st_size < 400_000
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to now
    before = _peak_rss_mb()
    with pytest.raises(DrawingError, match="13000x13000 pixels"):
        load_upload(huge_png)
    assert _peak_rss_mb() - before < 40, "the image was decoded"


def test_too_many_bytes_are_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG" + bytes(MAX_UPLOAD_BYTES))
    with pytest.raises(DrawingError, match="bytes"):
        load_upload(path)


def test_large_image_is_shrunk_before_recognition(tmp_path: Path) -> None:
    ink = np.kron(_ink("大"), np.ones((8, 8), np.uint8))  # 3200 x 3200
    path = tmp_path / "big.png"
    Image.fromarray(255 - ink).save(path)
    image = load_upload(path)
    assert max(image.size) == MAX_UPLOAD_SIDE


def test_not_an_image_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(DrawingError, match="notes.png: not a readable image"):
        load_upload(path)


def test_upload_is_removed_once_read_even_when_refused(
    tiny_recognizer: Recognizer, huge_png: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "gradio" / "0123abcd"
    folder.mkdir(parents=True)
    good = folder / "da.png"
    Image.fromarray(255 - _ink("大")).save(good)
    assert recognize_upload(tiny_recognizer, good).candidates[0].char == "大"
    assert not good.exists() and not folder.exists()
    folder.mkdir()
    huge = shutil.copy(huge_png, folder / "huge.png")
    with pytest.raises(DrawingError):
        recognize_upload(tiny_recognizer, huge)
    assert not Path(huge).exists()


def test_upload_folder_is_the_demos_own_and_removed_on_exit(monkeypatch) -> None:
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    with upload_folder() as folder:
        assert os.environ["GRADIO_TEMP_DIR"] == str(folder)
        assert folder.name.startswith("hccr-demo-")
        (folder / "x" / "y.png").parent.mkdir()
        (folder / "x" / "y.png").write_bytes(b"data")
    assert not folder.exists()
    assert "GRADIO_TEMP_DIR" not in os.environ


# --- the app ------------------------------------------------------------------------------------


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
    assert 'id="hccr-model"' in str(build_demo(rec, bundles=others).get_config_file())
    assert '<option value="gb1-teacher">' in panel_html([rec.name, *others])
    assert 'id="hccr-model"' not in panel_html([rec.name])  # one model: no picker


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_image_api_recognizes_and_leaves_no_upload_behind(served_demo, tmp_path: Path) -> None:
    client_mod = pytest.importorskip("gradio_client")
    url, folder = served_demo
    client = client_mod.Client(url, verbose=False)
    for ch in "十口山大水":
        path = tmp_path / f"{ord(ch)}.png"
        Image.fromarray(255 - _ink(ch)).save(path)
        out = client.predict(client_mod.handle_file(str(path)), "tiny10", api_name="/recognize")
        assert out["candidates"][0]["char"] == ch
        assert len(out["candidates"]) == 10
    time.sleep(0.5)  # Gradio moves uploads into place in a background task
    assert _files(folder) == [], "uploads pile up in the demo's folder"


def test_image_api_refuses_an_oversized_upload(served_demo, huge_png: Path) -> None:
    client_mod = pytest.importorskip("gradio_client")
    url, folder = served_demo
    client = client_mod.Client(url, verbose=False)
    with pytest.raises(Exception, match="13000x13000 pixels"):
        client.predict(client_mod.handle_file(str(huge_png)), "tiny10", api_name="/recognize")
    time.sleep(0.5)
    assert _files(folder) == []


def test_upload_over_the_byte_cap_is_refused_by_the_server(served_demo, tmp_path: Path) -> None:
    url, folder = served_demo
    boundary = "hccrboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + bytes(MAX_UPLOAD_BYTES + 1)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url + "gradio_api/upload", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=30)
    assert e.value.code == 413
    assert _files(folder) == []


def test_hccr_demo_keeps_uploads_out_of_the_system_temp_folder(
    tiny_bundle_path: Path, tmp_path: Path
) -> None:
    """`hccr demo`: uploads leave nothing behind, and SIGTERM removes the demo's own folder."""
    client_mod = pytest.importorskip("gradio_client")
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(TMPDIR=str(system_tmp), GRADIO_ANALYTICS_ENABLED="False",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "hccr.cli",
        "demo",
        "--model",
        str(tiny_bundle_path),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not start"
                time.sleep(0.3)
        folders = list(system_tmp.glob("hccr-demo-*"))
        assert len(folders) == 1, list(system_tmp.iterdir())
        client = client_mod.Client(url, verbose=False)
        image = tmp_path / "da.png"
        Image.fromarray(255 - _ink("大")).save(image)
        for _ in range(5):
            out = client.predict(client_mod.handle_file(str(image)), api_name="/recognize")
            assert out["candidates"][0]["char"] == "大"
        time.sleep(0.5)
        assert _files(system_tmp) == [], "uploads left in the temp folder"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 128 + signal.SIGTERM, output
    # onnxruntime writes a 51-byte session id file (.ses) into the temp folder; nothing else
    left = [p.name for p in system_tmp.iterdir() if p.name != ".ses"]
    assert left == [], "the demo's folder outlived it"
