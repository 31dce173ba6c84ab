"""Reliability, data side: damaged LMDBs, what --overwrite may replace, full disks, leftovers of
killed runs, empty or corrupt sources and the skip report. Each test makes the fault it probes
(a truncated data.mdb, a user's folder, a tiny tmpfs, a dead process's partial, ...).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import numpy as np
import pytest
from test_pack import _leftovers, _write_gnt_set
from tiny_lmdb import make_tiny_lmdb

from data_tools.cli import main as data_main
from hccr.casia import write_gnt
from hccr.lmdb_format import open_lmdb, read_meta

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _one_line(err: str) -> str:
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    return err.strip()


def _python(script: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120, env=ENV, cwd=REPO, **kwargs)  # fmt: skip


# --- a damaged LMDB is a one-line error, never a bus error ------------------------------------


def test_truncated_lmdb_is_one_line_error_for_every_reader(tmp_path: Path) -> None:
    db = make_tiny_lmdb(tmp_path / "cut.lmdb", per_class=200)  # ~225 KB of pages
    os.truncate(db / "data.mdb", 20_000)
    # In a child: reading past the end of the memory map kills the reader with SIGBUS (rc -7)
    script = f"""
    import sys
    from data_tools.cli import main as data_main
    from hccr.cli import main
    from hccr.dataset import LmdbDataset
    db = {str(db)!r}
    for name, argv, run in [
        ("info", ["info", db], data_main),
        ("recognize", ["recognize", db, "--workers", "0", "--format", "jsonl"], main),
        ("recognize-workers", ["recognize", db, "--workers", "2", "--format", "jsonl"], main),
        ("eval", ["eval", "gb1-student", "--data", db, "--workers", "0"], main),
        ("train", ["train", "--data", db, "--val", db, "-o", db + "-run", "--workers", "0"], main),
    ]:
        print("RC", name, run(argv), flush=True)
        print("END", name, file=sys.stderr, flush=True)
    try:
        LmdbDataset(db)
    except ValueError as e:
        print("DATASET", e)
    """
    proc = _python(script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    codes = dict(line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RC"))
    assert codes == {"info": "1", "recognize": "1", "recognize-workers": "1", "eval": "1",
                     "train": "1"}  # fmt: skip
    for block in proc.stderr.split("END")[:-1]:
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith(" ")]
        assert "Traceback" not in block, block
        assert any(str(db) in ln and "damaged LMDB" in ln and "truncated" in ln for ln in lines)
    assert "DATASET" in proc.stdout and "data.mdb is 20,000 bytes" in proc.stdout


@pytest.mark.parametrize("size", [0, 100, 4096])  # a cut inside the 2 meta pages
def test_lmdb_cut_inside_its_header_is_one_line_error(tmp_path: Path, capsys, size: int) -> None:
    db = make_tiny_lmdb(tmp_path / "cut.lmdb", per_class=4)
    os.truncate(db / "data.mdb", size)
    assert data_main(["info", str(db)]) == 1
    err = _one_line(capsys.readouterr().err)
    assert str(db) in err and "damaged LMDB" in err


# --- --overwrite replaces only an LMDB this tool made, and is checked before any work ------------


def _corrupt_gnt(path: Path) -> Path:
    path.write_bytes(os.urandom(3000))  # framing fails at byte 0 (without --skip-bad: an error)
    return path


def test_overwrite_refuses_a_folder_that_is_not_an_lmdb(tmp_path: Path, capsys) -> None:
    src = tmp_path / "1001.gnt"
    _write_gnt_set(src, 20)
    folder = tmp_path / "some"
    folder.mkdir()
    (folder / "thesis.txt").write_text("mine")
    assert data_main(["pack", str(src), "-o", str(folder), "--overwrite", "--no-progress"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert str(folder) in err and "thesis.txt" in err and "not replaced" in err
    assert (folder / "thesis.txt").read_text() == "mine"


def test_overwrite_refuses_an_lmdb_without_meta_record(tmp_path: Path, capsys) -> None:
    src = tmp_path / "1001.gnt"
    _write_gnt_set(src, 20)
    other = tmp_path / "other.lmdb"
    with lmdb.open(str(other), map_size=1 << 20, lock=False) as env, env.begin(write=True) as txn:
        txn.put(b"key", b"somebody else's data")
    assert data_main(["pack", str(src), "-o", str(other), "--overwrite", "--no-progress"]) == 1
    assert "no __meta__ record; not replaced" in _one_line(capsys.readouterr().err)
    with open_lmdb(other).begin() as txn:  # the process's one handle (lmdb allows no second)
        assert txn.get(b"key") == b"somebody else's data"


def test_overwrite_onto_a_regular_file_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    target = tmp_path / "notes.lmdb"
    target.write_text("mine")
    bad = _corrupt_gnt(tmp_path / "1001.gnt")  # reading it first would fail on it instead
    assert data_main(["pack", str(bad), "-o", str(target), "--overwrite", "--no-progress"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert str(target) in err and "is not a folder; not replaced" in err
    assert target.read_text() == "mine"
    assert data_main(["pack", str(bad), "-o", str(target), "--no-progress"]) == 1
    assert "already exists" in _one_line(capsys.readouterr().err)


def test_overwrite_replaces_an_lmdb_the_tool_made(tmp_path: Path) -> None:
    src = tmp_path / "1001.gnt"
    _write_gnt_set(src, 20)
    out = make_tiny_lmdb(tmp_path / "old.lmdb", per_class=2)
    assert data_main(["pack", str(src), "-o", str(out), "--overwrite", "--no-progress"]) == 0
    assert read_meta(out)["num_samples"] == 20


# --- a full disk or an I/O error: one line naming the output, exit 1, nothing left --------------


@pytest.fixture(scope="module")
def tmpfs_ok(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A tiny tmpfs in a private mount namespace (no root needed where user namespaces are on)."""
    where = tmp_path_factory.mktemp("probe")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=16k tmpfs {where}"],
                           capture_output=True, timeout=30)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -rm)")


def _on_tiny_tmpfs(mount: Path, size_kb: int, cmd: list[str]) -> tuple[int, str, str, list[str]]:
    """Runs cmd with a size_kb tmpfs at `mount`; returns (rc, stdout, stderr, what it left there)."""
    mount.mkdir(exist_ok=True)
    script = 'mount -t tmpfs -o size="$1"k tmpfs "$2" || exit 99; shift 2; "$@"; rc=$?; echo LEFT:; ls -A "$MNT"; exit $rc'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(size_kb), str(mount), *cmd],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**ENV, "MNT": str(mount)}, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode != 99, proc.stderr
    out, _, left = proc.stdout.rpartition("LEFT:\n")
    return proc.returncode, out, proc.stderr, left.split()


PACK = [sys.executable, "-m", "data_tools.cli", "pack", "--workers", "1", "--no-progress"]


def test_disk_full_during_pack_is_one_line_and_leaves_nothing(tmp_path: Path, tmpfs_ok) -> None:
    src = tmp_path / "1001.gnt"
    _write_gnt_set(src, 300)  # ~0.4 MB of samples for a 200 KB disk
    disk = tmp_path / "disk"
    rc, _, err, left = _on_tiny_tmpfs(disk, 200, [*PACK, str(src), "-o", str(disk / "out.lmdb")])
    assert rc == 1 and left == []
    assert (
        _one_line(err)
        == f"hccr-data pack: error: {disk / 'out.lmdb'}: cannot write: no space left on the device"
    )


def test_disk_full_for_the_report_leaves_no_lmdb(tmp_path: Path, tmpfs_ok) -> None:
    src = tmp_path / "1001.gnt"
    level2 = [("丂", np.full((8, 8), 0, np.uint8))] * 300  # each skipped: ~100 bytes of report
    _write_gnt_set(src, 30, extra=level2)
    disk, out = tmp_path / "disk", tmp_path / "out.lmdb"
    report = disk / "skipped.jsonl"
    cmd = [*PACK, str(src), "-o", str(out), "--report", str(report)]
    rc, _, err, left = _on_tiny_tmpfs(disk, 8, cmd)
    assert rc == 1 and left == [] and _leftovers(tmp_path) == []
    assert (
        _one_line(err)
        == f"hccr-data pack: error: {report}: cannot write: no space left on the device"
    )


def test_io_error_during_pack_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    # any system: a file size limit makes LMDB's own writes fail (EFBIG) as a bad disk would
    src = tmp_path / "1001.gnt"
    _write_gnt_set(src, 400)
    out = tmp_path / "out.lmdb"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = subprocess.run([*PACK, str(src), "-o", str(out)], capture_output=True, text=True,
                          timeout=120, env=ENV, cwd=REPO, preexec_fn=limit)  # fmt: skip
    assert proc.returncode == 1
    assert _one_line(proc.stderr).startswith(f"hccr-data pack: error: {out}: cannot write: ")
    assert _leftovers(tmp_path) == []


def test_checkpoint_on_a_full_disk_names_it(tmp_path: Path, tmpfs_ok) -> None:
    disk = tmp_path / "disk"
    script = f"""
    import torch
    from pathlib import Path
    from hccr.run_folder import atomic_torch_save
    try:
        atomic_torch_save({{"w": torch.zeros(100_000)}}, Path({str(disk / "checkpoint.pt")!r}))
    except OSError as e:
        print(e)
    """
    rc, out, err, left = _on_tiny_tmpfs(disk, 100, [sys.executable, "-c", textwrap.dedent(script)])
    assert rc == 0 and left == [], err
    assert out.strip() == f"{disk / 'checkpoint.pt'}: cannot write: no space left on the device"


# --- leftovers of a killed run are removed by the next one, with a note -------------------------


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_stale_partials_of_a_dead_process_are_removed(tmp_path: Path, capsys) -> None:
    src = tmp_path / "1001.gnt"
    _write_gnt_set(src, 20)
    out = tmp_path / "out.lmdb"
    dead, alive = _dead_pid(), os.getppid()
    for name in (f".out.lmdb.partial-{dead}", f".out.lmdb.partial-{dead}-compact",
                 f".out.lmdb.partial-{alive}"):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.mdb").write_bytes(b"\0" * 4096)
    assert data_main(["pack", str(src), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"note: removed {tmp_path}/.out.lmdb.partial-{dead}," in err
    assert f"note: removed {tmp_path}/.out.lmdb.partial-{dead}-compact," in err
    left = sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name)
    assert left == [f".out.lmdb.partial-{alive}"]  # another run still writing it: kept


def test_synth_removes_stale_partials_too(tmp_path: Path, capsys) -> None:
    (tmp_path / "fonts").mkdir()
    (tmp_path / "chars.txt").write_text("永\n", encoding="utf-8")
    dead = _dead_pid()
    (tmp_path / f".s.lmdb.partial-{dead}").mkdir()
    argv = ["synth", "-o", str(tmp_path / "s.lmdb"), "--chars", str(tmp_path / "chars.txt"),
            "--per-char", "1", "--styles", "strokes", "--font-dir", str(tmp_path / "fonts"),
            "--workers", "1", "--no-progress"]  # fmt: skip
    assert data_main(argv) == 0
    assert f"note: removed {tmp_path}/.s.lmdb.partial-{dead}," in capsys.readouterr().err
    assert not (tmp_path / f".s.lmdb.partial-{dead}").exists()


# --- empty or corrupt sources: a truthful error; every skip in the report -----------------------


def test_empty_source_error_says_empty(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "1001.gnt"
    empty.write_bytes(b"")
    assert data_main(["pack", str(empty), "-o", str(tmp_path / "o.lmdb"), "--no-progress"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert f"{empty} is empty" in err and "charset" not in err
    assert _leftovers(tmp_path) == []


def test_all_corrupt_source_error_names_the_corruption(tmp_path: Path, capsys) -> None:
    bad = _corrupt_gnt(tmp_path / "1001.gnt")
    argv = ["pack", str(bad), "-o", str(tmp_path / "o.lmdb"), "--skip-bad", "--no-progress"]
    assert data_main(argv) == 1
    err = _one_line(capsys.readouterr().err)
    assert f"{bad}: corrupt framing" in err and "charset" not in err


def test_report_lists_framing_skips(tmp_path: Path, capsys) -> None:
    src = tmp_path / "1001.gnt"
    _write_gnt_set(src, 20)
    cut = src.stat().st_size - 100  # the last record loses its tail
    os.truncate(src, cut)
    report = tmp_path / "skipped.jsonl"
    argv = ["pack", str(src), "-o", str(tmp_path / "o.lmdb"), "--skip-bad", "--report",
            str(report), "--no-progress"]  # fmt: skip
    assert data_main(argv) == 0
    assert "skipped 1: corrupt framing" in capsys.readouterr().err
    items = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(items) == 1 and items[0]["source"] == str(src)
    assert items[0]["reason"].startswith("corrupt framing") and items[0]["offset"] > 0
    assert read_meta(tmp_path / "o.lmdb")["skipped_examples"] == items


def test_failed_pack_leaves_no_report(tmp_path: Path) -> None:
    src = tmp_path / "1001.gnt"
    write_gnt(src, [("丂", np.zeros((8, 8), np.uint8))] * 3)  # all outside gb1: nothing to pack
    report = tmp_path / "skipped.jsonl"
    argv = ["pack", str(src), "-o", str(tmp_path / "o.lmdb"), "--report", str(report)]
    assert data_main([*argv, "--no-progress"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1001.gnt"]
