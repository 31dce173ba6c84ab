"""Bad-input and fault probes of issue 25, run against a checkout: exit code and stderr per probe.

  python bench/reliability_probes.py                 # this checkout
  python bench/reliability_probes.py --repo OLD_DIR  # another (e.g. `git archive REV | tar -x`)

Each probe runs the CLI in a child process (a bus error must not end the bench) with PYTHONPATH
set to the checkout, on fixtures made in a temporary folder; it prints one Markdown row: the
probe, the exit code, the number of stderr lines and the first of them (shortened).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _setup(root: Path, repo: Path) -> None:
    """Fixtures, made with the checkout's own writers."""
    script = f"""
    import os, struct, sys
    import numpy as np
    from pathlib import Path
    sys.path.insert(0, {str(HERE / "tests")!r})
    from tiny_lmdb import make_tiny_lmdb
    from tiny_bundle import train_tiny_bundle, render_sample, TINY_CHARS, TINY_NORM
    from hccr.casia import write_gnt
    from hccr.lmdb_format import LmdbWriter
    from hccr.preprocess import normalize
    root = Path({str(root)!r})
    cut = make_tiny_lmdb(root / "cut.lmdb", per_class=200)
    os.truncate(cut / "data.mdb", 20_000)
    make_tiny_lmdb(root / "many.lmdb", per_class=4000, size=32)
    bundle = train_tiny_bundle(root / "tiny10")
    rng = np.random.default_rng(0)
    write_gnt(root / "1001.gnt", [(c, 255 - render_sample(c, rng, pen_width=0.06)) for c in TINY_CHARS * 2])
    data = bytearray((root / "1001.gnt").read_bytes())
    struct.pack_into("<H", data, struct.unpack_from("<I", data, 0)[0] + 6, 0)  # record 1: width 0
    (root / "bad-record.gnt").write_bytes(bytes(data))
    (root / "big.gnt").write_bytes((root / "1001.gnt").read_bytes() * 30)  # 600 records
    (root / "empty.gnt").write_bytes(b"")
    (root / "random.gnt").write_bytes(os.urandom(3000))
    (root / "tail.gnt").write_bytes((root / "1001.gnt").read_bytes()[:-100])
    (root / "folder").mkdir()
    (root / "folder" / "thesis.txt").write_text("mine")
    (root / "file.lmdb").write_text("mine")
    with LmdbWriter(root / "disjoint.lmdb") as w:
        for _ in range(5):
            w.add(normalize(render_sample("一", rng, pen_width=0.06), TINY_NORM), 0)
        w.finish({{"charset": ["丂"], "num_classes": 1, "image_size": 32, "norm": TINY_NORM.to_dict(), "sources": {{}}}})
    from PIL import Image
    (root / "names").mkdir()
    Image.fromarray(255 - render_sample("十", rng, pen_width=0.06)).save(root / "names" / os.fsdecode(b"\\xff\\xfe.png"))
    """
    _python(repo, script, check=True)


def _python(repo: Path, script: str, check: bool = False, **kw) -> subprocess.CompletedProcess:
    return _run(repo, [sys.executable, "-c", textwrap.dedent(script)], check=check, **kw)


def _run(repo: Path, cmd: list[str], check: bool = False, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="surrogateescape", env=env,
                          cwd=repo, timeout=300, **kw)  # fmt: skip
    if check and proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return proc


def _row(probe: str, rc: int, err: str, extra: str = "") -> str:
    err = err.replace(os.environ.get("PROBE_ROOT", "\0"), "T")  # the temporary folder, as T
    lines = [ln for ln in err.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    first = first if len(first) <= 90 else first[:87] + "..."
    return f"| {probe} | {rc} | {len(lines)} | `{first}`{extra} |"


def probes(repo: Path, root: Path) -> list[str]:
    hccr = [sys.executable, "-m", "hccr.cli"]
    data = [sys.executable, "-m", "data_tools.cli"]
    pack = [*data, "pack", "--no-progress", "--workers", "1"]
    tiny = ["--model", str(root / "tiny10")]
    rows = []

    def cli(probe: str, cmd: list[str]) -> subprocess.CompletedProcess:
        proc = _run(repo, cmd)
        rows.append(_row(probe, proc.returncode, proc.stderr))
        return proc

    cli("1 info on a truncated LMDB", [*data, "info", str(root / "cut.lmdb")])
    cli(
        "1 recognize a truncated LMDB",
        [*hccr, "recognize", str(root / "cut.lmdb"), *tiny, "--workers", "0"],
    )
    cli(
        "2 pack --overwrite onto a user's folder",
        [*pack, str(root / "1001.gnt"), "-o", str(root / "folder"), "--overwrite"],
    )
    rows[-1] = (
        rows[-1][:-2]
        + f" ({'kept' if (root / 'folder' / 'thesis.txt').exists() else 'DELETED'} thesis.txt) |"
    )
    cli(
        "3 eval on a disjoint charset",
        [
            *hccr,
            "eval",
            str(root / "tiny10"),
            "--data",
            str(root / "disjoint.lmdb"),
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    unshare = [
        "unshare",
        "-rm",
        "sh",
        "-c",
        'mount -t tmpfs -o size=100k tmpfs "$1" && shift && exec "$@"',
        "sh",
    ]
    (root / "disk").mkdir(exist_ok=True)
    cli(
        "5 pack onto a full 100 KB tmpfs",
        [
            *unshare,
            str(root / "disk"),
            *pack,
            str(root / "big.gnt"),
            "-o",
            str(root / "disk" / "o.lmdb"),
        ],
    )
    dead = subprocess.Popen(["true"])
    dead.wait()
    for suffix in ("", "-compact"):
        (root / f".six.lmdb.partial-{dead.pid}{suffix}").mkdir()
    proc = _run(repo, [*pack, str(root / "1001.gnt"), "-o", str(root / "six.lmdb")])
    left = sorted(p.name for p in root.iterdir() if p.name.startswith(".six.lmdb.partial-"))
    rows.append(
        _row(
            "6 pack after a killed run's partials",
            proc.returncode,
            proc.stderr,
            f" (left: {len(left)})",
        )
    )
    proc = _run(repo, [*hccr, "recognize", str(root / "names"), *tiny, "--format", "jsonl"])
    try:
        json.loads(proc.stdout.encode("utf-8", "surrogateescape").decode("utf-8"))
        parses = "line parses"
    except ValueError:
        parses = "line is not UTF-8 JSON"
    rows.append(
        _row("8 jsonl for a name with bytes ff fe", proc.returncode, proc.stderr, f" ({parses})")
    )
    cli("9 pack an empty .gnt", [*pack, str(root / "empty.gnt"), "-o", str(root / "e.lmdb")])
    cli(
        "9 pack a random-bytes .gnt --skip-bad",
        [*pack, str(root / "random.gnt"), "--skip-bad", "-o", str(root / "e.lmdb")],
    )
    rows.append(
        _sigterm_row(
            repo,
            [
                *hccr,
                "recognize",
                str(root / "many.lmdb"),
                *tiny,
                "--workers",
                "2",
                "--batch-size",
                "64",
            ],
        )
    )
    proc = _run(
        repo,
        [
            *hccr,
            "recognize",
            str(root / "bad-record.gnt"),
            str(root / "empty.gnt"),
            *tiny,
            "--format",
            "jsonl",
            "--workers",
            "0",
        ],
    )
    rows.append(
        _row(
            "11 recognize 20 records, one bad, + a 0-byte .gnt",
            proc.returncode,
            proc.stderr,
            f" ({len(proc.stdout.splitlines())} of 20 kept)",
        )
    )
    report = root / "report.jsonl"
    proc = _run(
        repo,
        [
            *pack,
            str(root / "tail.gnt"),
            "--skip-bad",
            "--report",
            str(report),
            "-o",
            str(root / "t.lmdb"),
        ],
    )
    n = len(report.read_text().splitlines()) if report.exists() else 0
    rows.append(
        _row(
            "12 --report of a framing skip", proc.returncode, proc.stderr, f" (report: {n} line(s))"
        )
    )
    proc = _run(
        repo, [*pack, str(root / "random.gnt"), "-o", str(root / "file.lmdb"), "--overwrite"]
    )
    rows.append(_row("13 pack --overwrite onto a regular file", proc.returncode, proc.stderr))
    return rows


def _sigterm_row(repo: Path, cmd: list[str]) -> str:
    bad = 0
    for _ in range(3):
        env = {**os.environ, "PYTHONPATH": str(repo)}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=repo, start_new_session=True)  # fmt: skip
        proc.stdout.readline()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        bad += err.strip() != "hccr: terminated"
    return _row(
        "10 SIGTERM to recognize's process group", proc.returncode, err, f" (noise in {bad} of 3)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repo", type=Path, default=HERE, help="checkout to probe (default: this one)"
    )
    args = parser.parse_args()
    repo = args.repo.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["PROBE_ROOT"] = str(root)
        _setup(root, repo)
        print(
            f"probes of {repo}\n\n| probe | exit | stderr lines | first stderr line |\n| --- | ---: | ---: | --- |"
        )
        for row in probes(repo, root):
            print(row, flush=True)


if __name__ == "__main__":
    main()
