"""`hccr-data pack` / `info` end to end on CASIA files written here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from data_tools.cli import main as data_main
from data_tools.render import render_strokes
from hccr.casia import iter_gnt, write_gnt, write_pot
from hccr.dataset import LmdbDataset
from hccr.lmdb_format import read_meta
from hccr.preprocess import NormConfig, ink_from_white_background, normalize

CHARS = "永啊阿埃挨哎"


def _bitmap(rng: np.random.Generator) -> np.ndarray:
    h, w = rng.integers(20, 60, size=2)
    img = np.full((h, w), 255, np.uint8)
    for _ in range(
        4
    ):  # strokes, not blobs: ink covers well under half the bitmap, as in real scans
        pts = rng.integers(0, [w, h], size=(3, 2)).astype(np.int32)
        cv2.polylines(img, [pts], False, int(rng.integers(0, 100)), 2)
    return img


def _write_gnt_set(path, n: int, seed: int = 0, extra=()) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    samples = [(CHARS[i % len(CHARS)], _bitmap(rng)) for i in range(n)] + list(extra)
    write_gnt(path, samples)
    return samples


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or p.suffix == ".lmdb")


@pytest.mark.parametrize("workers", [1, 2])
def test_pack_gnt_matches_reader_sample_by_sample(tmp_path, workers):
    src = tmp_path / "1001-c.gnt"
    # 700 records: more than one work chunk; symbols and a non-level-1 hanzi are skipped
    samples = _write_gnt_set(
        src, 700, extra=[("!", np.zeros((5, 5), np.uint8)), ("丂", np.zeros((5, 5), np.uint8))]
    )
    out = tmp_path / "train.lmdb"
    assert (
        data_main(["pack", str(src), "-o", str(out), "--workers", str(workers), "--no-progress"])
        == 0
    )

    ds = LmdbDataset(out)
    assert len(ds) == 700
    cfg = NormConfig()
    for i, rec in enumerate(iter_gnt(src)):
        if i >= 700:
            break
        image, label, writer = ds.read(i)
        assert ds.charset.char(label) == samples[i][0] and writer == 1001
        np.testing.assert_array_equal(image, normalize(ink_from_white_background(rec.bitmap), cfg))
    meta = read_meta(out)
    assert meta["sources"][str(src)] == {
        "writer": 1001,
        "records": 702,
        "written": 700,
        "skipped": {"not in charset gb1": 2},
    }
    assert (
        meta["num_classes"] == 3755 and meta["image_size"] == 64 and meta["norm"] == cfg.to_dict()
    )
    assert {e["tag"] for e in meta["skipped_examples"]} == {"!", "丂"}


def test_pack_pot_renders_strokes_with_the_pen_renderer(tmp_path):
    strokes = [np.array([[100, 100], [900, 120]]), np.array([[500, 0], [520, 1000]])]
    src = tmp_path / "001.pot"
    write_pot(src, [("十", strokes), ("!", strokes)])
    out = tmp_path / "o.lmdb"
    assert data_main(["pack", str(src), "-o", str(out), "--workers", "1", "--no-progress"]) == 0
    ds = LmdbDataset(out)
    assert len(ds) == 1
    image, label, writer = ds.read(0)
    assert ds.charset.char(label) == "十" and writer == 1
    np.testing.assert_array_equal(image, normalize(render_strokes(strokes, 0.035), NormConfig()))


def test_pack_options_size_norm_charset_writers(tmp_path):
    for w in (1001, 1002, 1003):
        _write_gnt_set(tmp_path / f"{w}-c.gnt", 10, seed=w)
    out = tmp_path / "s.lmdb"
    args = ["pack", str(tmp_path), "-o", str(out), "--size", "48", "--norm", "linear"]
    args += ["--charset", "seen", "--writers", "1002-1003", "--workers", "1", "--no-progress"]
    assert data_main(args) == 0
    meta = read_meta(out)
    assert meta["num_samples"] == 20 and meta["writers"] == [1002, 1003]
    assert meta["image_size"] == 48 and meta["norm"]["method"] == "linear"
    assert meta["charset"] == sorted(CHARS)
    assert LmdbDataset(out)[0][0].shape == (1, 48, 48)


def test_info_json(tmp_path, capsys):
    _write_gnt_set(tmp_path / "1-c.gnt", 12)
    out = tmp_path / "i.lmdb"
    data_main(
        ["pack", str(tmp_path / "1-c.gnt"), "-o", str(out), "--workers", "1", "--no-progress"]
    )
    capsys.readouterr()
    assert data_main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["num_samples"], info["num_classes"], info["image_size"]) == (12, 3755, 64)


def _corrupt(tmp_path, kind: str):
    path = tmp_path / "1001-c.gnt"
    _write_gnt_set(path, 5)
    data = bytearray(path.read_bytes())
    good_end = len(data)
    if kind == "truncated":
        data += data[:30]  # a sixth record cut short
    elif kind == "size-mismatch":
        extra = bytearray(data[: 10 + 4])
        extra[0:4] = (10 + 4).to_bytes(4, "little")
        extra[6:10] = (3).to_bytes(2, "little") + (3).to_bytes(2, "little")  # 3x3 != 4 bytes
        data += extra
    elif kind == "zero-width":
        data += (10).to_bytes(4, "little") + "永".encode("gbk") + bytes(4)
    elif kind == "huge":
        data += (
            (10 + 2000).to_bytes(4, "little") + "永".encode("gbk") + (2000).to_bytes(2, "little")
        )
        data += (1).to_bytes(2, "little") + bytes(2000)
    elif kind == "not-casia":
        data = bytearray(b"<html>this is not a gnt file</html>\n" * 10)
        good_end = 0
    path.write_bytes(bytes(data))
    return path, good_end


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("truncated", "truncated"),
        ("size-mismatch", "size field 14 != 10 + 3*3"),
        ("zero-width", "empty bitmap 0x0"),
        ("huge", "exceeds 1024x1024"),
        ("not-casia", "not a CASIA file"),
    ],
)
def test_bad_gnt_one_line_error_and_nothing_written(tmp_path, capsys, kind, reason):
    path, offset = _corrupt(tmp_path, kind)
    out = tmp_path / "out.lmdb"
    assert data_main(["pack", str(path), "-o", str(out), "--workers", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{path}: byte {offset}: " in err[0] and reason in err[0]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["truncated", "size-mismatch", "zero-width", "huge"])
def test_skip_bad_packs_the_good_records_and_reports_the_bad(tmp_path, capsys, kind):
    path, offset = _corrupt(tmp_path, kind)
    out = tmp_path / "out.lmdb"
    report = tmp_path / "skipped.jsonl"
    args = [
        "pack",
        str(path),
        "-o",
        str(out),
        "--skip-bad",
        "--report",
        str(report),
        "--workers",
        "1",
        "--no-progress",
    ]
    assert data_main(args) == 0
    assert read_meta(out)["num_samples"] == 5
    assert "skipped 1:" in capsys.readouterr().err
    if kind in (
        "size-mismatch",
        "zero-width",
        "huge",
    ):  # framing intact: the record itself is listed
        (line,) = report.read_text().splitlines()
        assert json.loads(line)["offset"] == offset


def test_unwritable_output_fails_cleanly(tmp_path, capsys):
    _write_gnt_set(tmp_path / "1-c.gnt", 3)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root may write into a 0500 folder; sysfs refuses new files even to root
    target = locked if not os.access(locked, os.W_OK) else "/sys"
    try:
        args = ["pack", str(tmp_path / "1-c.gnt"), "-o", f"{target}/o.lmdb", "--no-progress"]
        assert data_main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{target}/o.lmdb" in err[0]
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_missing_output_folder_and_existing_output(tmp_path, capsys):
    _write_gnt_set(tmp_path / "1-c.gnt", 3)
    src = str(tmp_path / "1-c.gnt")
    assert data_main(["pack", src, "-o", str(tmp_path / "no" / "o.lmdb"), "--no-progress"]) == 1
    assert "does not exist" in capsys.readouterr().err
    out = tmp_path / "o.lmdb"
    assert data_main(["pack", src, "-o", str(out), "--no-progress", "--workers", "1"]) == 0
    assert data_main(["pack", src, "-o", str(out), "--no-progress", "--workers", "1"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (
        data_main(["pack", src, "-o", str(out), "--no-progress", "--workers", "1", "--overwrite"])
        == 0
    )


def test_non_casia_extension_is_refused(tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"png")
    assert data_main(["pack", str(tmp_path / "x.png"), "-o", str(tmp_path / "o.lmdb")]) == 1
    assert "not a CASIA file (expected .gnt or .pot)" in capsys.readouterr().err


def test_forked_workers_die_on_sigterm_as_before():
    # The CLI's SIGTERM handler must not reach forked workers: a Python handler cannot run in a
    # worker blocked in C, which then outlives Pool.terminate() and hangs the pack. (Forked in
    # a fresh interpreter: a fork of this multi-threaded test process can itself deadlock.)
    script = """
import os, signal
from hccr import cli
signal.signal(signal.SIGTERM, cli._on_sigterm)
pid = os.fork()
if pid == 0:
    os._exit(0 if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else 3)
_, status = os.waitpid(pid, 0)
assert signal.getsignal(signal.SIGTERM) is cli._on_sigterm, "the parent keeps its handler"
raise SystemExit(os.waitstatus_to_exitcode(status))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_cli_called_from_a_thread_runs(tmp_path):
    # signal handlers can only be set in the main thread: from another, the CLI keeps the default
    codes = []
    missing = str(tmp_path / "missing.gnt")
    worker = threading.Thread(
        target=lambda: codes.append(data_main(["pack", missing, "-o", str(tmp_path / "o.lmdb")]))
    )
    worker.start()
    worker.join()
    assert codes == [1]


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_interrupted_pack_leaves_no_lmdb(tmp_path, sig, code, said):
    src = tmp_path / "1-c.gnt"
    _write_gnt_set(src, 150_000)  # ~3 s of packing on a fast idle machine: the signal lands first
    out = tmp_path / "big.lmdb"
    cmd = [
        sys.executable,
        "-m",
        "data_tools.cli",
        "pack",
        str(src),
        "-o",
        str(out),
        "--workers",
        "2",
        # ~1 in 5,000 generated scribbles is dense enough to read as inkless (an error without
        # this flag): reached before the SIGINT on a slow run, it ended the pack with exit 1
        "--skip-bad",
    ]
    # a shell's background job (`pytest &`) ignores SIGINT, and a child inherits that: give
    # the pack the default action, so Python turns SIGINT into KeyboardInterrupt as in a terminal
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.time() + 60
    while not any(".partial-" in p.name for p in tmp_path.iterdir()):  # wait until writing began
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.1)
    proc.send_signal(sig)
    rc, err = proc.wait(timeout=60), proc.stderr.read()
    assert rc == code and said in err, err
    assert "Traceback" not in err, err
    assert _leftovers(tmp_path) == []
