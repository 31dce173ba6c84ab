"""One image, recognised from a cold start: wall time and peak RSS of a fresh process.

Two ways in, each in its own fresh interpreter: the CLI (`hccr recognize one.png`) and the API
(`Recognizer.from_bundle().recognize(image)`), with the shipped bundle (its recorded ONNX
export: no torch) and forced onto the float model (`--backend torch`). `--baseline TREE` runs
the same commands on another checkout (e.g. main before the light path) in the same run, so the
ratio holds on a busy machine. Peak RSS is the child's ru_maxrss (os.wait4); the time is the
median of `--repeat` runs, interpreter start included.

  python bench/light_recognize.py --baseline /work/main --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drawn_input import cpu_name  # bench/ is on sys.path as the script's folder

ROOT = Path(__file__).resolve().parent.parent

_CLI = """
import sys
from hccr.cli import main
rc = main(["recognize", "--format", "jsonl", *sys.argv[1:]])
sys.stdout.flush()
print("TORCH", "torch" in sys.modules, file=sys.stderr)
sys.exit(rc)
"""

_API = """
import sys
from PIL import Image
from hccr.recognizer import Recognizer
backend = sys.argv[2] if len(sys.argv) > 2 else "auto"
rec = Recognizer.from_bundle(backend=backend)
top = rec.recognize(Image.open(sys.argv[1]), topk=5)[0]
print(top[0].char, rec.backend)
print("TORCH", "torch" in sys.modules, file=sys.stderr)
"""


def _draw_png(folder: Path) -> Path:
    """A pen-drawn character (dark on white), as a user's drawing or scan would arrive."""
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from data_tools.render import render_strokes
    from data_tools.strokes import load_medians

    ink = render_strokes(load_medians().get("永"), pen_width=0.05, canvas=256)
    path = folder / "one.png"
    Image.fromarray(255 - ink).save(path)
    return path


def _measure(tree: Path, code: str, args: list[str], repeat: int) -> dict:
    runs = [_run_once(tree, code, args) for _ in range(repeat)]
    return {
        "seconds": statistics.median(r[0] for r in runs),
        "rss_mb": max(r[1] for r in runs) / 1024,
        "torch": runs[0][2],
        "answer": runs[0][3],
    }


def _run_once(tree: Path, code: str, args: list[str]) -> tuple[float, int, bool, str]:
    """(seconds, peak RSS KB, torch imported, first stdout line) of one fresh process; the
    child's own rusage comes from os.wait4 on its pid."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=tree, env=env,
                                stdout=out, stderr=err)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise SystemExit(f"{tree}: exit {proc.returncode}:\n{stderr}")
    return seconds, usage.ru_maxrss, "TORCH True" in stderr, (stdout.splitlines() or [""])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout to run the same commands on (e.g. /work/main)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median time)")
    args = parser.parse_args()
    trees = [("this tree", ROOT)] + (
        [("baseline", args.baseline.resolve())] if args.baseline else []
    )
    with tempfile.TemporaryDirectory() as tmp:
        png = str(_draw_png(Path(tmp)))
        rows = []
        for label, tree in trees:
            cases = [
                ("CLI", "auto", _CLI, [png]),
                ("API", "auto", _API, [png]),
                ("CLI", "torch", _CLI, [png, "--backend", "torch"]),
                ("API", "torch", _API, [png, "torch"]),
            ]
            for way, backend, code, cargs in cases:
                _run_once(tree, code, cargs)  # warm the page cache and numba's cache
                rows.append((label, way, backend, _measure(tree, code, cargs, args.repeat)))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
          f"median of {args.repeat} fresh processes")  # fmt: skip
    print("| tree | way in | --backend | torch imported | seconds | peak RSS MB |")
    print("| --- | --- | --- | --- | ---: | ---: |")
    for label, way, backend, m in rows:
        print(f"| {label} | {way} | {backend} | {'yes' if m['torch'] else 'no'} | "
              f"{m['seconds']:.2f} | {m['rss_mb']:.0f} |")  # fmt: skip
    if args.baseline:
        base = {(w, b): m for lab, w, b, m in rows if lab == "baseline"}
        for label, way, backend, m in rows:
            if label == "this tree" and backend == "auto":
                ref = base[(way, backend)]
                print(f"{way}, auto: {ref['seconds'] / m['seconds']:.1f}x faster, "
                      f"{ref['rss_mb'] / m['rss_mb']:.1f}x less peak memory than the baseline")  # fmt: skip


if __name__ == "__main__":
    main()
