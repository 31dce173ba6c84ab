"""Pen input, one run: the online (trajectory) bundle vs the image bundle vs dinkit and zinnia.

Two sets of pen trajectories, every recogniser on the same ones:
  - real: a CASIA `.pot` file (writer 001's, `--pot`), GB2312 level-1 classes `--classes`
    (default 1877-3754: the half the generator's writer statistics were never fitted on);
  - drawn: bench/drawn_input.py's mouse drawings (its generator and seed), `--drawn-limit`
    classes (all 3,755 by default).

Ours, batch 1, one thread, `Recognizer.from_bundle(..., num_threads=1)` (the export when the
bundle has one); ms/char is the whole call:
  - the online bundle: `recognize_strokes(points)` (trajectory features drawn inside);
  - the image bundle: the `.pot` strokes inked as `hccr-data pack` inks them, the drawings as the
    demo inks them, then `recognize(image)`.
Peers, in a subprocess of `--peer-python` (one thread each):
  - dinkit (PyPI `dinkit==1.3.3`, a stroke recogniser): `Recognizer().recognize(strokes,
    top_k=10)`, whose dict is ordered best first (its values are distances: smaller is better).
    It takes integer coordinates in a 16-bit range and misreads negative ones, so each
    character's points are shifted to start at 0 and rounded (no other change). Its candidates
    include radicals outside GB2312 (e.g. "氵"); they count as wrong answers, as any
    recogniser's wrong answer does;
  - zinnia (Tegaki zh_CN model): the points fitted to an 80% box of a 300 px canvas, its best
    case (bench/drawn_input.py's `run_zinnia`).
Every top-1 has n and a 95% Wilson interval (bench/real_handwriting.py's `wilson`).

    python bench/online.py --online models/gb1-online --image models/gb1-student \\
        --pot ../shared/data/olhwdb1.0-writer001.pot --peer-python /tmp/peers/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

from drawn_input import DEFAULT_SEED, ZINNIA_MODEL, cpu_name  # noqa: E402
from real_handwriting import call_peer_worker, wilson  # noqa: E402

_WARMUP = 10
_ZINNIA_SIDE = 300


def _scored(name: str, tops: list[list[str]], labels: list[str], times: list[float]) -> dict:
    n = len(labels)
    top1 = sum(t[:1] == [label] for t, label in zip(tops, labels, strict=True))
    top10 = sum(label in t[:10] for t, label in zip(tops, labels, strict=True))
    ms = float(np.mean(times) * 1000) if times else float("nan")
    return {"name": name, "n": n, "top1_k": top1, "top1": top1 / max(n, 1),
            "top10": top10 / max(n, 1), "ms_per_char": ms}  # fmt: skip


def _timed(fn, items: list, make=None) -> tuple[list[list[str]], list[float]]:
    """fn(make(item)) for every item, timing fn only (`make` builds its input: an image made
    per call, since 3,755 RGBA canvases would take 2.4 GB)."""
    make = make or (lambda item: item)
    for item in items[:_WARMUP]:
        fn(make(item))
    tops, times = [], []
    for item in items:
        x = make(item)
        start = time.perf_counter()
        top = fn(x)
        times.append(time.perf_counter() - start)
        tops.append(top)
    return tops, times


# ----- the sets -----------------------------------------------------------------------------


def real_set(pot: Path, classes: range) -> dict:
    """The `.pot` records of GB1 classes in `classes`: raw points, labels, inked images."""
    from data_tools.render import render_strokes
    from hccr.casia import iter_pot
    from hccr.charset import Charset

    gb1 = Charset.gb1()
    keep = {gb1.char(i) for i in classes}
    strokes, labels = [], []
    for rec in iter_pot(pot):
        if rec.char in keep:
            strokes.append([s.astype(np.int64) for s in rec.strokes])
            labels.append(rec.char)

    def ink(i: int) -> np.ndarray:  # as `hccr-data pack` inks a .pot record
        return render_strokes([p.astype(np.float64) for p in strokes[i]], 0.035)

    return {"strokes": strokes, "labels": labels, "ink": ink}


def drawn_set(limit: int | None, seed: int) -> dict:
    """bench/drawn_input.py's mouse drawings: points and the demo's RGBA canvas."""
    from drawn_input import canvas_image, draw_set, get_parser

    from data_tools.strokes import load_medians
    from demo.recognition import BRUSH_RADIUS, CANVAS_SIDE  # the demo's sheet and brush
    from hccr.charset import Charset

    defaults = get_parser(CANVAS_SIDE, BRUSH_RADIUS).parse_args([])
    gb1, medians = Charset.gb1(), load_medians()
    class_ids = [k for k, ch in enumerate(gb1.chars) if ch in medians]
    if limit is not None and limit < len(class_ids):
        pick = np.random.default_rng(defaults.subsample_seed).choice(len(class_ids), limit, False)
        class_ids = [class_ids[i] for i in sorted(pick)]
    labels = [gb1.chars[k] for k in class_ids]
    inks, strokes = draw_set(labels, class_ids, seed, defaults.canvas, defaults.brush_radius)
    return {"strokes": strokes, "labels": labels,
            "ink": lambda i: canvas_image(inks[i], "transparent")}  # fmt: skip


# ----- ours -----------------------------------------------------------------------------------


def score_ours(path: Path, data: dict) -> dict:
    from hccr.recognizer import Recognizer

    rec = Recognizer.from_bundle(path, num_threads=1)
    if rec.input_kind == "strokes":
        tops, times = _timed(
            lambda s: [c.char for c in rec.recognize_strokes(s, topk=10)], data["strokes"]
        )
        how = "points (trajectory maps)"
    else:
        tops, times = _timed(
            lambda im: [c.char for c in rec.recognize(im, topk=10)[0]],
            list(range(len(data["labels"]))),
            data["ink"],
        )
        how = "inked image"
    return {**_scored(f"{rec.name} ({rec.backend})", tops, data["labels"], times), "input": how}


# ----- peers (in --peer-python: numpy, dinkit, zinnia through bench/drawn_input.py) ----------


def _dinkit_points(strokes: list[np.ndarray]) -> list[list[list[int]]]:
    lo = np.concatenate(strokes).min(axis=0)
    return [np.round(s - lo).astype(int).tolist() for s in strokes]


def run_dinkit(strokes: list, labels: list[str]) -> dict:
    try:
        from dinkit import Recognizer
    except ImportError as e:
        return {"skipped": f"dinkit not installed ({e}); pip install dinkit==1.3.3"}
    rec = Recognizer()
    tops, times = _timed(lambda s: list(rec.recognize(_dinkit_points(s), top_k=10)), strokes)
    return {**_scored("dinkit 1.3.3", tops, labels, times), "input": "points shifted to 0"}


def peer_worker(data_path: Path, out_path: Path, zinnia_model: Path) -> int:
    from drawn_input import run_zinnia

    with open(data_path, "rb") as f:
        sets = pickle.load(f)
    out = {}
    for name, s in sets.items():
        z = run_zinnia(s["strokes"], s["labels"], _ZINNIA_SIDE, zinnia_model, True)
        if "top1" in z:
            z = {**z, "name": "zinnia (Tegaki zh_CN)", "top1_k": round(z["top1"] * z["n"]),
                 "input": "points fitted to an 80% box"}  # fmt: skip
        out[name] = {"dinkit": run_dinkit(s["strokes"], s["labels"]), "zinnia": z}
    out_path.write_text(json.dumps(out))
    return 0


def run_peers(python: str, sets: dict, work: Path, zinnia_model: Path) -> dict:
    payload = {k: {"strokes": s["strokes"], "labels": s["labels"]} for k, s in sets.items()}
    out = call_peer_worker(python, __file__, payload, work, zinnia_model)
    return {k: {"peers": {"skipped": out}} for k in sets} if isinstance(out, str) else out


# ----- report ---------------------------------------------------------------------------------


def print_table(sets: dict, ours: dict, peers: dict) -> None:
    print("| set | recogniser | input | n | top-1 [95% CI] | top-10 | ms/char |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name in sets:
        for r in [*ours[name], *peers.get(name, {}).values()]:
            if "skipped" in r:
                print(f"| {name} | {r.get('name', '?')} | skipped: {r['skipped']} | | | | |")
                continue
            lo, hi = wilson(r["top1_k"], r["n"])
            print(f"| {name} | {r['name']} | {r['input']} | {r['n']} "
                  f"| {100 * r['top1']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] "
                  f"| {100 * r['top10']:.1f}% | {r['ms_per_char']:.2f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--online", nargs="*", default=[],
                        help="online bundle(s) (input: strokes), e.g. a float and an int8 export")  # fmt: skip
    parser.add_argument("--image", default="gb1-student", help="image bundle (default %(default)s)")
    parser.add_argument("--pot", type=Path, nargs="*", default=[], help="real .pot file(s)")
    parser.add_argument("--classes", default="1877-3754", metavar="A-B",
                        help="GB1 classes scored on --pot (default %(default)s)")  # fmt: skip
    parser.add_argument("--drawn-limit", type=int, default=None,
                        help="drawn characters (default: all 3,755 classes)")  # fmt: skip
    parser.add_argument("--no-drawn", action="store_true", help="skip the drawn set")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="drawn set's seed")
    parser.add_argument("--peer-python", default=sys.executable, help="interpreter with dinkit")
    parser.add_argument("--no-peers", action="store_true", help="ours only")
    parser.add_argument("--zinnia-model", type=Path, default=ZINNIA_MODEL)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--peer-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer_worker is not None:
        return peer_worker(args.peer_worker, args.json, args.zinnia_model)
    if not args.online:
        parser.error("--online BUNDLE is required")
    from hccr.bundle import resolve_model

    models = [*(resolve_model(m) for m in args.online), resolve_model(args.image)]
    a, _, b = args.classes.partition("-")
    sets = {f"{p.name}, classes {args.classes}": real_set(p, range(int(a), int(b or a) + 1))
            for p in args.pot}  # fmt: skip
    if not args.no_drawn:
        sets[f"drawn (seed {args.seed})"] = drawn_set(args.drawn_limit, args.seed)
    start = time.perf_counter()
    ours = {name: [score_ours(m, s) for m in models] for name, s in sets.items()}
    with tempfile.TemporaryDirectory(prefix="hccr-online-") as work:
        peers = (
            {}
            if args.no_peers
            else run_peers(args.peer_python, sets, Path(work), args.zinnia_model)
        )
    print(f"{cpu_name()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}; "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    print_table(sets, ours, peers)
    if args.json is not None:
        rows = {name: {"ours": ours[name], "peers": peers.get(name, {})} for name in sets}
        args.json.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
