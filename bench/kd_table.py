"""The knowledge-transfer table at 3,755 classes: a teacher and its students, one row each, every
column measured in this one run.

Rows are bundles given as `--row NAME=BUNDLE` (the first row is the reference, the teacher:
ratios are to it). Columns:
  - synthetic held-out top-1: `--synth DB.lmdb` (make it with `hccr-data synth --split val`:
    seeds and font families the training split never sees), on the LMDB's prepared images;
  - drawn input top-1: bench/drawn_input.py's mouse drawings of every GB2312 level-1 class
    (seed 1234), through the demo's path `Recognizer.recognize(image)`;
  - each real set of bench/real_handwriting.py, with n and a 95% Wilson interval: the online
    writer's `.pot` (GB1 classes 1,877-3,754 only: the other half fitted the generator's writer
    statistics), scan folders (`--offline`); and their unweighted mean;
  - params and FLOPs (hccr.profiling, the float model at its input size), bytes of weights.pt
    and of model.onnx as they lie in the bundle;
  - CPU latency at batch 1 and 64, 1 thread: `Recognizer.recognize_prepared` on prepared
    drawings (the network plus top-10; the backend is the bundle's own recogniser path, named
    in the table: `onnx` with a recorded export, else `torch`); median of the repeats;
  - ratios to the teacher (FLOPs, weights bytes, latency at batch 1 and 64);
  - with `--peer-python`: PP-OCRv6 (RapidOCR's recogniser, 1 thread) on the same drawings, and
    each row's time per character against it (drawn input, batch 1: both see one image).

`--synth-limit`, `--drawn-limit` and `--real-limit` subsample each set (fixed by `--seed`), to
keep a run short; the table says so. The real data is yours (CASIA licence), never shipped.

    python bench/kd_table.py --row teacher=models/gb1-teacher --row "student alone=runs/alone" \\
        --row "+ logit KD=runs/kd-logit" --row "+ logit + feature KD=models/gb1-student" \\
        --synth data/synth-val.lmdb --pot ../shared/data/olhwdb1.0-writer001.pot \\
        --offline ../shared/data/hwdb-train16 ../shared/data/hwdb-onewriter101 \\
        --peer-python /tmp/peers/bin/python --alone "student alone" --json kd.json

`--alone NAME` prints the issue's targets against that row: the teacher >= 3 pt over it on the
real sets' mean; each other student >= 1.5 pt over it there and within 1 pt of the teacher on
synthetic held-out; every student >= 8x fewer FLOPs than the teacher and (with
`--peer-python`) >= 20x faster than PP-OCRv6 per character.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drawn_input import DEFAULT_SEED, cpu_name, draw_set, run_peers, score_bundle  # noqa: E402
from real_handwriting import _FIT_HALF, _label, _run, wilson  # noqa: E402

BATCH = 256  # images per recogniser call when scoring a set


def parse_rows(specs: list[str]) -> list[tuple[str, Path]]:
    """`NAME=BUNDLE` -> (name, bundle folder), in order; the first is the reference."""
    from hccr.bundle import load_bundle_info, resolve_model

    rows, charsets = [], []
    for spec in specs:
        name, sep, model = spec.partition("=")
        if not sep or not name or not model:
            raise SystemExit(f"--row {spec!r}: expected NAME=BUNDLE")
        rows.append((name, resolve_model(model)))
        charsets.append(load_bundle_info(rows[-1][1]).charset)
        if charsets[-1] != charsets[0]:  # one table compares models of the same classes
            raise SystemExit(f"--row {spec!r}: its charset differs from {rows[0][1]}'s")
    return rows


def _subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _score(rec, prepared: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Top-1 / top-10 of `rec` on prepared (N, S, S) ink maps, with n and the Wilson interval."""
    top1 = top10 = 0
    for i in range(0, len(labels), BATCH):
        for label, top in zip(labels[i : i + BATCH], rec.recognize_prepared(prepared[i : i + BATCH], 10), strict=True):  # fmt: skip
            chars = [c.char for c in top]
            top1 += chars[0] == label
            top10 += label in chars
    n = len(labels)
    lo, hi = wilson(top1, n)
    return {"n": n, "top1_k": top1, "top1": top1 / max(n, 1), "top10": top10 / max(n, 1),
            "ci95": [lo, hi]}  # fmt: skip


# ----- the sets, read once ---------------------------------------------------------------------


def read_lmdb(db: Path, limit: int | None, seed: int, keep=None) -> tuple[np.ndarray, list[str]]:
    """(prepared images, labels) of an LMDB, optionally only labels in `keep`, subsampled."""
    from hccr.dataset import LmdbDataset

    data = LmdbDataset(db)
    labels_all = [data.charset.char(k) for k in data.labels()]
    index = [i for i, ch in enumerate(labels_all) if keep is None or ch in keep]
    index = [index[i] for i in _subsample(len(index), limit, seed)]
    images = np.stack([data.read(i)[0] for i in index]) if index else np.zeros((0, 1, 1), np.uint8)
    return images, [labels_all[i] for i in index]


class RealSets:
    """bench/real_handwriting.py's sets: the online `.pot` packed once per preprocessing (the
    project's pen renderer), scan folders read once; each prepared per bundle."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self._packed: dict[tuple[int, str], Path] = {}
        self.scans: dict[str, tuple[list[Path], list[str]]] = {}
        for folder in args.offline:
            paths = sorted(p for p in folder.rglob("*.png"))
            paths = [paths[i] for i in _subsample(len(paths), args.real_limit, args.seed)]
            self.scans[f"offline {folder.name}"] = (paths, [_label(p) for p in paths])

    def _pack(self, pot: Path, norm) -> Path:
        key = (norm.size, norm.method)
        if key not in self._packed:
            db = self.tmp / f"{pot.stem}-{norm.size}-{norm.method}.lmdb"
            _run([sys.executable, "-m", "data_tools.cli", "pack", str(pot), "-o", str(db),
                  "--no-progress", "--size", str(norm.size), "--norm", norm.method])  # fmt: skip
            self._packed[key] = db
        return self._packed[key]

    def score(self, rec) -> dict[str, dict[str, Any]]:
        from PIL import Image

        out = {}
        for pot in self.args.pot:
            a, _, b = self.args.classes.partition("-")
            keep = {rec.charset.char(i) for i in range(int(a), int(b or a) + 1)}
            images, labels = read_lmdb(self._pack(pot, rec.norm), self.args.real_limit,
                                       self.args.seed, keep)  # fmt: skip
            out[f"online {pot.name}, classes {self.args.classes}"] = _score(rec, images, labels)
        for name, (paths, labels) in self.scans.items():
            inside = [(p, ch) for p, ch in zip(paths, labels, strict=True) if ch in rec.charset]
            prepared = np.stack([rec.prepare(Image.open(p)) for p, _ in inside])
            out[name] = _score(rec, prepared, [ch for _, ch in inside])
            out[name]["outside"] = len(paths) - len(inside)
        return out


# ----- one row ---------------------------------------------------------------------------------


def _median_ms(fn, x: np.ndarray, repeats: int) -> float:
    fn(x)  # warm-up: first-call allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure_row(name: str, path: Path, args: argparse.Namespace, sets: dict[str, Any]) -> dict:
    from hccr.bundle import load_bundle
    from hccr.profiling import count_flops, count_params
    from hccr.recognizer import Recognizer

    print(f"{name}: {path}", file=sys.stderr, flush=True)
    bundle = load_bundle(path)
    row: dict[str, Any] = {"name": name, "path": str(path), "arch": bundle.arch,
                           "classes": len(bundle.charset)}  # fmt: skip
    row["params"] = count_params(bundle.model)
    row["flops"] = count_flops(bundle.model, bundle.norm.size)["flops"]
    onnx = path / "model.onnx"
    row["weights_bytes"] = (path / "weights.pt").stat().st_size
    row["onnx_bytes"] = onnx.stat().st_size if onnx.is_file() else None
    del bundle
    rec = Recognizer.from_bundle(path, num_threads=1)
    row["backend"] = rec.backend
    if args.synth is not None:
        images, labels = read_lmdb(args.synth, args.synth_limit, args.seed)
        row["synthetic"] = _score(rec, images, labels)
    drawn = sets["drawn"]
    scored = score_bundle(path, drawn["inks"], drawn["chars"], "transparent", "auto")
    row["drawn"] = {k: scored[k] for k in ("n", "top1", "top10", "ms_per_char", "backend")}
    row["real"] = sets["real"].score(rec)
    if row["real"]:
        row["real_mean_top1"] = float(np.mean([r["top1"] for r in row["real"].values()]))
    prepared = np.stack([rec.prepare(_canvas(ink)) for ink in drawn["inks"][:64]])
    batch64 = np.resize(prepared, (64, *prepared.shape[1:]))  # fewer drawings: repeated
    call = lambda x: rec.recognize_prepared(x, 10)  # noqa: E731
    row["ms_b1"] = _median_ms(call, batch64[:1], args.repeats)
    row["ms_b64"] = _median_ms(call, batch64, max(5, args.repeats // 5))
    return row


def _canvas(ink: np.ndarray) -> np.ndarray:
    from drawn_input import canvas_image

    return canvas_image(ink, "transparent")


# ----- report ----------------------------------------------------------------------------------


def _pct(r: dict | None, ci: bool = False) -> str:
    if not r:
        return "—"
    text = f"{100 * r['top1']:.1f}%"
    if ci:
        lo, hi = r["ci95"]
        text += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return text


def _mb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:.2f} MB"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a and b else "—"


def markdown(rows: list[dict], ppocr: dict | None) -> str:
    ref = rows[0]
    real_names = list(ref.get("real", {}))
    head = ["model", "synthetic held-out", "drawn"]
    for name in real_names:
        ns = {r["real"][name]["n"] for r in rows if name in r.get("real", {})}
        head.append(f"{name} (n={ns.pop()})" if len(ns) == 1 else name)
    head += ["real mean"] if real_names else []
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for r in rows:
        cells = [r["name"], _pct(r.get("synthetic")), _pct(r["drawn"])]
        cells += [_pct(r["real"].get(name), ci=True) for name in real_names]
        if real_names:
            cells.append(f"{100 * r['real_mean_top1']:.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    cost = ["model", "backend", "params", "MFLOPs", "weights.pt", "model.onnx", "ms @1",
            "ms @64", "FLOPs ÷", "bytes ÷", "ms @1 ÷", "ms @64 ÷"]  # fmt: skip
    if ppocr:
        cost += ["ms/char drawn", "PP-OCRv6 ms/char ÷ this"]
    lines += ["", "| " + " | ".join(cost) + " |", "| --- | --- |" + " ---: |" * (len(cost) - 2)]
    for r in rows:
        cells = [r["name"], r["backend"], f"{r['params'] / 1e6:.2f} M", f"{r['flops'] / 1e6:.1f}",
                 _mb(r["weights_bytes"]), _mb(r["onnx_bytes"]), f"{r['ms_b1']:.2f}",
                 f"{r['ms_b64']:.1f}", _ratio(ref["flops"], r["flops"]),
                 _ratio(ref["weights_bytes"], r["weights_bytes"]), _ratio(ref["ms_b1"], r["ms_b1"]),
                 _ratio(ref["ms_b64"], r["ms_b64"])]  # fmt: skip
        if ppocr:
            ms = r["drawn"]["ms_per_char"]
            cells += [f"{ms:.2f}", _ratio(ppocr["ms_per_char"], ms)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(rows: list[dict], alone: str, ppocr: dict | None) -> list[str]:
    """The issue's targets, met or not, for each student row against the `alone` row."""
    teacher = rows[0]
    base = next((r for r in rows if r["name"] == alone), None)
    if base is None:
        raise SystemExit(f"--alone {alone!r}: no row of that name")
    lines = []

    def pt(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else 100 * (a - b)

    def line(what: str, gap: float | None, goal: float, unit: str = "pt") -> None:
        if gap is None:
            lines.append(f"- {what}: not measured")
        else:
            value, need = (
                (f"{gap:.1f}x", f"{goal:g}x")
                if unit == "x"
                else (f"{gap:+.1f} pt", f"{goal:+g} pt")
            )
            lines.append(
                f"- {what}: {value} (goal >= {need}): {'met' if gap >= goal else 'not met'}"
            )

    real = "real_mean_top1"
    synth = teacher.get("synthetic", {}).get("top1")
    line(f"{teacher['name']} over {alone}, real mean", pt(teacher.get(real), base.get(real)), 3)
    for r in rows[1:]:
        if r is base:
            continue
        line(f"{r['name']} over {alone}, real mean", pt(r.get(real), base.get(real)), 1.5)
        student_synth = r.get("synthetic", {}).get("top1")
        line(f"{r['name']} against {teacher['name']}, synthetic held-out",
             pt(student_synth, synth), -1)  # fmt: skip
    for r in rows[1:]:
        line(f"{r['name']}: FLOPs ÷ teacher", teacher["flops"] / r["flops"], 8, "x")
        if ppocr:
            line(f"{r['name']}: PP-OCRv6 ms/char ÷ this",
                 ppocr["ms_per_char"] / r["drawn"]["ms_per_char"], 20, "x")  # fmt: skip
    return lines


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--row", action="append", required=True, metavar="NAME=BUNDLE",
                   help="a row: its name and bundle (repeat; the first is the teacher)")  # fmt: skip
    p.add_argument("--synth", type=Path, help="synthetic held-out LMDB")
    p.add_argument("--pot", type=Path, nargs="*", default=[], help="real online writer(s)")
    p.add_argument("--offline", type=Path, nargs="*", default=[], help="real scan folders")
    p.add_argument("--classes", default=_FIT_HALF, metavar="A-B",
                   help="online: GB1 classes scored (default %(default)s)")  # fmt: skip
    p.add_argument("--synth-limit", type=int, help="score N synthetic samples (default: all)")
    p.add_argument("--drawn-limit", type=int, help="draw N classes (default: all 3,755)")
    p.add_argument("--real-limit", type=int, help="score N samples of each real set")
    p.add_argument("--seed", type=int, default=0, help="subsampling seed")
    p.add_argument("--repeats", type=int, default=50, help="latency repeats at batch 1 (/5 at 64)")
    p.add_argument("--alone", metavar="NAME",
                   help="the row of the student trained alone: print the issue's targets")  # fmt: skip
    p.add_argument("--peer-python", help="interpreter with rapidocr: PP-OCRv6 on the drawings")
    p.add_argument("--json", type=Path, help="also write every figure as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    import torch

    from demo.app import BRUSH_RADIUS, CANVAS_SIDE
    from hccr.charset import Charset

    argv = sys.argv[1:] if argv is None else argv
    args = get_parser().parse_args(argv)
    torch.set_num_threads(1)
    rows_in = parse_rows(args.row)
    started = time.perf_counter()
    gb1 = Charset.gb1()
    class_ids = [int(k) for k in _subsample(len(gb1), args.drawn_limit, args.seed)]
    chars = [gb1.chars[k] for k in class_ids]
    inks, strokes = draw_set(chars, class_ids, DEFAULT_SEED, CANVAS_SIDE, BRUSH_RADIUS)
    with tempfile.TemporaryDirectory(prefix="hccr-kd-") as tmp:
        sets = {"drawn": {"chars": chars, "inks": inks}, "real": RealSets(args, Path(tmp))}
        rows = [measure_row(name, path, args, sets) for name, path in rows_in]
        ppocr = None
        if args.peer_python:
            from drawn_input import ZINNIA_MODEL

            peer_args = argparse.Namespace(peers=["rapidocr"], peer_python=args.peer_python,
                                           rapidocr_input="crop", zinnia_model=ZINNIA_MODEL,
                                           zinnia_input=["box"])  # fmt: skip
            ppocr = run_peers(peer_args, chars, inks, strokes, Path(tmp)).get("rapidocr")
            if ppocr and "skipped" in ppocr:
                print(f"PP-OCRv6: skipped: {ppocr['skipped']}", file=sys.stderr)
                ppocr = None
    command = "python bench/kd_table.py " + shlex.join(argv)
    limits = {k: getattr(args, k) for k in ("synth_limit", "drawn_limit", "real_limit")}
    print(f"`{command}`")
    print(f"{os.cpu_count()} CPUs ({cpu_name()}), 1 thread, {datetime.date.today()}, "
          f"{time.perf_counter() - started:.0f} s; limits: {limits}; ratios: the first row "
          "÷ each row (for ms/char: PP-OCRv6 ÷ each row)")  # fmt: skip
    if ppocr:
        print(f"PP-OCRv6 on the drawings: top-1 {100 * ppocr['top1']:.1f}%, "
              f"{ppocr['ms_per_char']:.2f} ms/char ({ppocr.get('version', '')})")  # fmt: skip
    print()
    print(markdown(rows, ppocr))
    goals = targets(rows, args.alone, ppocr) if args.alone else []
    if goals:
        print("\nTargets (teacher >= 3 pt over the student alone on the real mean; a distilled "
              "student >= 1.5 pt over it and within 1 pt of the teacher on synthetic held-out; "
              ">= 8x fewer FLOPs than the teacher; >= 20x faster than PP-OCRv6 per character):")  # fmt: skip
        print("\n".join(goals))
    if args.json is not None:
        report = {"command": command, "cpu": cpu_name(), "cpus": os.cpu_count(),
                  "date": str(datetime.date.today()), "limits": limits, "rows": rows,
                  "ppocr": ppocr, "targets": goals}  # fmt: skip
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
