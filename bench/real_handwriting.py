"""Accuracy on real CASIA handwriting, hccr beside PP-OCRv6 and zinnia on the same samples.

The real files are not part of the project (CASIA licence): point this at your own copies.
  - online: a `.pot` file, packed with `hccr-data pack` (the project's pen renderer) and read
    with `hccr recognize --format jsonl` on the LMDB. `--classes A-B` keeps GB2312 level-1
    classes A..B only (writer 001's first half, 0-1876, fitted the generator's writer
    statistics, so it is reported on 1877-3754: the default);
  - offline: folders of scanned character images, read with `hccr recognize --format jsonl`;
    the label is the image's parent folder name when that is one character, else the first
    character of the file name.

Peers, in a subprocess of `--peer-python` (as in bench/drawn_input.py), on the same samples:
  - PP-OCRv6 (RapidOCR's text recogniser, 1 thread): the scan, or the online character drawn
    by the project's pen renderer, black on white, cropped to its ink; top-1 only;
  - zinnia (Tegaki zh_CN model, online only): the `.pot` points fitted to a centred box.
Every row gives n and a 95% Wilson interval; images whose label is outside the model's
charset are counted apart and scored by nobody. `--baseline BUNDLE` also reads every set with
another bundle (same charset) and compares the two on the same samples: how many only one of
them reads right, and the exact two-sided McNemar p of that split (whether one model is better
than the other beyond chance, which overlapping intervals cannot say).

    python bench/real_handwriting.py --model models/gb1-student \\
        --pot ../shared/data/olhwdb1.0-writer001.pot \\
        --offline ../shared/data/hwdb-train16 ../shared/data/hwdb-onewriter101 \\
        --peer-python /tmp/peers/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
_FIT_HALF = "1877-3754"  # the half of GB1 that writer statistics were never fitted on


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n."""
    if n == 0:
        return 0.0, 0.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def _recognize(model: Path, source: Path) -> list[dict]:
    out = _run([sys.executable, "-m", "hccr.cli", "recognize", str(source), "--model", str(model),
                "--format", "jsonl", "--topk", "10"])  # fmt: skip
    return [json.loads(line) for line in out.splitlines()]


def _label(path: Path) -> str:
    return path.parent.name if len(path.parent.name) == 1 else path.stem[0]


def _score(rows: list[tuple[str, list[str]]]) -> dict:
    n = len(rows)
    right = [chars[:1] == [label] for label, chars in rows]  # per sample, for --baseline
    top1 = sum(right)
    top10 = sum(label in chars for label, chars in rows)
    return {"n": n, "top1_k": top1, "top1": top1 / max(n, 1), "top10": top10 / max(n, 1),
            "right": right}  # fmt: skip


def mcnemar(base: list[bool], model: list[bool]) -> tuple[int, int, float]:
    """(samples only `model` reads right, only `base` reads right, exact two-sided McNemar p)."""
    gain = sum(m and not b for b, m in zip(base, model, strict=True))
    loss = sum(b and not m for b, m in zip(base, model, strict=True))
    n, k = gain + loss, min(gain, loss)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return gain, loss, p


def online_set(
    model: Path, bundle, pot: Path, classes: range, tmp: Path, peers: bool = True
) -> dict:
    """hccr on the packed `.pot` (classes in `classes` only), plus what the peers need."""
    from data_tools.render import render_strokes
    from hccr.casia import iter_pot

    db = tmp / f"{pot.stem}.lmdb"
    _run([sys.executable, "-m", "data_tools.cli", "pack", str(pot), "-o", str(db), "--no-progress",
          "--size", str(bundle.norm.size), "--norm", bundle.norm.method])  # fmt: skip
    keep = {bundle.charset.char(i) for i in classes}
    rows = []
    for r in _recognize(model, db):
        if r["label"] in keep:
            rows.append((r["label"], [c["char"] for c in r["top"]]))
    if not peers:
        return {"hccr": _score(rows)}
    # the same records for the peers: pen-rendered image (PP-OCRv6), raw points (zinnia)
    inks, strokes, labels = [], [], []
    for rec in iter_pot(pot):
        if rec.char in keep:
            inks.append(render_strokes([s.astype(np.float64) for s in rec.strokes], canvas=128))
            strokes.append([s.astype(np.int32) for s in rec.strokes])
            labels.append(rec.char)
    return {"hccr": _score(rows), "inks": inks, "strokes": strokes, "labels": labels}


def offline_set(model: Path, bundle, folder: Path, peers: bool = True) -> dict:
    from PIL import Image

    rows, inks, labels, outside = [], [], [], 0
    for r in _recognize(model, folder):
        path = Path(r["source"])
        label = _label(path)
        if label not in bundle.charset:
            outside += 1
            continue
        rows.append((label, [c["char"] for c in r["top"]]))
        if peers:
            inks.append(255 - np.asarray(Image.open(path).convert("L")))
            labels.append(label)
    return {"hccr": _score(rows), "inks": inks, "strokes": None, "labels": labels,
            "outside": outside}  # fmt: skip


# ----- peers (in --peer-python: numpy, the peer and bench/drawn_input.py only) -----------------


def peer_worker(data_path: Path, out_path: Path, zinnia_model: Path) -> int:
    sys.path.insert(0, str(_HERE))
    from drawn_input import run_rapidocr, run_zinnia

    with open(data_path, "rb") as f:
        sets = pickle.load(f)
    out = {}
    for name, s in sets.items():
        res = {"rapidocr": _guard(run_rapidocr, s["inks"], s["labels"], crop=True)}
        if s["strokes"] is not None:
            res["zinnia"] = _guard(run_zinnia, s["strokes"], s["labels"], 300, zinnia_model, True)
        for r in res.values():
            r.pop("misses", None)
            if "top1" in r:
                r["top1_k"] = round(r["top1"] * r["n"])
        out[name] = res
    out_path.write_text(json.dumps(out))
    return 0


def _guard(fn, *args, **kwargs) -> dict:
    # one peer failing (a missing runtime) must not take the other's row with it
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported in the table
        return {"skipped": f"{type(e).__name__}: {e}"}


def call_peer_worker(
    python: str, script: str, payload: dict, work: Path, zinnia_model: Path
) -> dict | str:
    """Runs `script --peer-worker` under the peers' interpreter (one thread each) on `payload`:
    its JSON result, or why it could not run (one line)."""
    data, result = work / "peers.pkl", work / "peers.json"
    with open(data, "wb") as f:
        pickle.dump(payload, f)
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [python, str(Path(script).resolve()), "--peer-worker", str(data), "--json",
           str(result), "--zinnia-model", str(zinnia_model)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, env={**os.environ, **threads}, capture_output=True, text=True)
    except OSError as e:
        return f"cannot run {python}: {e}"
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{python} failed: {reason}"
    return json.loads(result.read_text())


def run_peers(python: str, sets: dict, tmp: Path, zinnia_model: Path) -> dict:
    payload = {k: {kk: s[kk] for kk in ("inks", "strokes", "labels")} for k, s in sets.items()}
    out = call_peer_worker(python, __file__, payload, tmp, zinnia_model)
    return {k: {"rapidocr": {"skipped": out}} for k in sets} if isinstance(out, str) else out


# ----- report ---------------------------------------------------------------------------------


def _cell(r: dict | None) -> str:
    if r is None:
        return "—"
    if "skipped" in r:
        return "skipped"
    lo, hi = wilson(r["top1_k"], r["n"])
    return f"{100 * r['top1']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="bundle (default: the shipped default)")
    parser.add_argument("--pot", type=Path, nargs="*", default=[])
    parser.add_argument("--offline", type=Path, nargs="*", default=[])
    parser.add_argument(
        "--classes",
        default=_FIT_HALF,
        metavar="A-B",
        help="online: GB1 classes scored (default %(default)s, the half not used for fitting)",
    )
    parser.add_argument("--peer-python", default=sys.executable, help="interpreter with rapidocr")
    parser.add_argument("--no-peers", action="store_true", help="hccr only")
    parser.add_argument("--baseline", default=None, metavar="BUNDLE",
                        help="also read every set with this bundle and compare, sample by sample")  # fmt: skip
    parser.add_argument("--zinnia-model", type=Path,
                        default=Path("/usr/share/tegaki/models/zinnia/handwriting-zh_CN.model"))  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--peer-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer_worker is not None:
        return peer_worker(args.peer_worker, args.json, args.zinnia_model)
    from hccr.bundle import load_bundle, resolve_model

    a, _, b = args.classes.partition("-")
    classes = range(int(a), int(b or a) + 1)
    model = resolve_model(args.model)
    bundle = load_bundle(model)  # its charset and normalisation; the commands load it themselves
    tmp = Path(tempfile.mkdtemp(prefix="hccr-real-"))
    start = time.perf_counter()
    try:
        sets = read_sets(model, bundle, args, classes, tmp, peers=not args.no_peers)
        peers = {} if args.no_peers else run_peers(args.peer_python, sets, tmp, args.zinnia_model)
        base = {}
        if args.baseline:  # the same sets read by another bundle, its own packing of the .pot
            base_model = resolve_model(args.baseline)
            base_bundle = load_bundle(base_model)
            base = read_sets(base_model, base_bundle, args, classes, tmp / "baseline", peers=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"model: {model}; {os.cpu_count()} CPUs; {time.perf_counter() - start:.0f} s")
    print("| real handwriting | n | hccr top-1 [95% CI] | PP-OCRv6 top-1 [95% CI] "
          "| zinnia top-1 [95% CI] | hccr top-10 | not in charset (not scored) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    report = []
    for name, s in sets.items():
        h, p = s["hccr"], peers.get(name, {})
        print(f"| {name} | {h['n']} | {_cell(h)} | {_cell(p.get('rapidocr'))} "
              f"| {_cell(p.get('zinnia'))} | {100 * h['top10']:.1f}% "
              f"| {s.get('outside', '—')} |")  # fmt: skip
        h = {k: v for k, v in h.items() if k != "right"}
        report.append({"set": name, "hccr": h, "peers": p, "outside": s.get("outside")})
    for name, p in peers.items():
        for peer, r in p.items():
            if "skipped" in r:
                print(f"{peer} on {name}: skipped: {r['skipped']}")
    if base:
        report = _print_paired(args.baseline, sets, base, report)
    if args.json is not None:
        args.json.write_text(json.dumps({"model": str(model), "rows": report}, indent=2) + "\n")
    return 0


def read_sets(
    model: Path, bundle, args: argparse.Namespace, classes: range, tmp: Path, peers: bool
) -> dict[str, dict]:
    """Every `--pot` and `--offline` set read by `model`, by row name (with `peers`, also what
    the peers need); `tmp` holds the packed `.pot` files."""
    tmp.mkdir(exist_ok=True)
    sets = {}
    for pot in args.pot:
        sets[f"online {pot.name}, classes {args.classes}"] = online_set(
            model, bundle, pot, classes, tmp, peers
        )
    for folder in args.offline:
        sets[f"offline {folder.name}"] = offline_set(model, bundle, folder, peers)
    return sets


def _print_paired(baseline: str, sets: dict, base: dict, report: list[dict]) -> list[dict]:
    print(f"\nbeside the baseline {baseline}, on the same samples:")
    print("| real handwriting | n | baseline top-1 | this model top-1 | right only with this model "
          "| right only with the baseline | McNemar p |\n| --- | ---: | ---: | ---: | ---: | ---: "
          "| ---: |")  # fmt: skip
    for row, (name, s) in zip(report, sets.items(), strict=True):
        b, h = base[name]["hccr"], s["hccr"]
        if len(b["right"]) != len(h["right"]):
            raise SystemExit(f"{name}: the baseline scored {len(b['right'])} samples, "
                             f"the model {len(h['right'])} (another charset?)")  # fmt: skip
        gain, loss, p = mcnemar(b["right"], h["right"])
        print(f"| {name} | {h['n']} | {100 * b['top1']:.1f}% | {100 * h['top1']:.1f}% | {gain} "
              f"| {loss} | {p:.2g} |")  # fmt: skip
        row["baseline"] = {"top1": b["top1"], "gain": gain, "loss": loss, "mcnemar_p": p}
    return report


if __name__ == "__main__":
    raise SystemExit(main())
