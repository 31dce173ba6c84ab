"""`hccr recognize` throughput: characters/s over an LMDB and a .gnt file, float vs ONNX export.

Writes N pen-rendered characters (vendored stroke medians, GB2312 level 1) once as an LMDB
(already normalised: read + model) and once as a `.gnt` (raw bitmaps: read + normalise + model),
then runs the real CLI (`python -m hccr.cli recognize ... --format jsonl > /dev/null`, DataLoader
workers included) on each and reads the rate from its summary line. The model is the default
shipped bundle, or, before one ships, an untrained `student_lw` over GB2312 level 1 (speed does
not depend on the weights). The ONNX rows run the bundle's `model.onnx`, exported into a temporary
copy with `hccr.export.export_onnx` when the bundle has none. `--compare` runs other bundles
(same charset and normalisation) on the same files, alternating with the first so that all
see the same machine, and prints model / compare for each row.

  python bench/recognize.py                          # 10,000 characters, 2 workers
  python bench/recognize.py --samples 2000 --model gb1-teacher
  python bench/recognize.py --model runs/new-bundle --compare models/gb1-student --backends onnx
  python bench/recognize.py --model int8/fixed --compare int8/float-onnx int8/today --backends onnx
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _model_folder(spec: str | None, work: Path) -> tuple[Path, str]:
    """The bundle to benchmark, copied into `work` (so an export can be added beside it)."""
    from hccr.bundle import BundleError, resolve_model, save_bundle

    try:
        src = resolve_model(spec)
        label = spec or src.name
        dst = work / f"{len(list(work.iterdir()))}-{src.name}"
        shutil.copytree(src, dst)
        return dst, label
    except BundleError:
        if spec is not None:
            raise
    import torch

    from hccr.charset import Charset
    from hccr.nets import create_model
    from hccr.preprocess import NormConfig

    torch.manual_seed(0)
    model = create_model("student_lw", num_classes=3755)
    path = save_bundle(
        work / "untrained-student_lw", model, "student_lw", {}, Charset.gb1(), NormConfig()
    )
    return path, "untrained student_lw (no bundle in models/)"


def _ensure_onnx(folder: Path, backends: list[str]) -> None:
    if "onnx" in backends and not (folder / "model.onnx").is_file():
        from hccr.bundle import load_bundle
        from hccr.export import export_onnx

        bundle = load_bundle(folder)
        export_onnx(bundle.model, folder / "model.onnx", input_size=bundle.norm.size)


def _check_comparable(a: Path, b: Path) -> None:
    """Both bundles read the same LMDB, normalised once with the first one's settings."""
    from hccr.bundle import load_bundle

    ba, bb = load_bundle(a), load_bundle(b)
    if ba.charset.chars != bb.charset.chars or ba.norm != bb.norm:
        raise SystemExit(f"--compare {b.name}: its charset or normalisation differs from {a.name}")


def _write_inputs(folder: Path, work: Path, samples: int, seed: int) -> tuple[Path, Path]:
    from data_tools.render import render_strokes
    from data_tools.strokes import load_medians
    from hccr.bundle import load_bundle
    from hccr.casia import write_gnt
    from hccr.lmdb_format import LmdbWriter
    from hccr.preprocess import normalize

    bundle = load_bundle(folder)
    medians = load_medians()
    chars = [c for c in bundle.charset.chars if c in medians]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(chars), size=samples)
    bitmaps = []
    for i in picks:
        ink = render_strokes(medians.get(chars[i]), pen_width=rng.uniform(0.03, 0.08), canvas=96)
        bitmaps.append((chars[i], 255 - ink))  # .gnt bitmaps: dark ink on white
    gnt = work / "bench.gnt"
    write_gnt(gnt, bitmaps)
    lmdb = work / "bench.lmdb"
    with LmdbWriter(lmdb) as w:
        for ch, bitmap in bitmaps:
            w.add(normalize(255 - bitmap, bundle.norm), bundle.charset.index(ch))
        w.finish({"charset": list(bundle.charset.chars), "num_classes": len(bundle.charset),
                  "image_size": bundle.norm.size, "norm": bundle.norm.to_dict(),
                  "sources": {"bench": samples}})  # fmt: skip
    return lmdb, gnt


def _run_cli(
    inputs: Path, folder: Path, backend: str, args: argparse.Namespace
) -> tuple[int, float, float]:
    cmd = [sys.executable, "-m", "hccr.cli", "recognize", str(inputs), "--model", str(folder),
           "--format", "jsonl", "--backend", backend, "--workers", str(args.workers),
           "--batch-size", str(args.batch_size), "--no-progress"]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"recognize failed ({proc.returncode}):\n{proc.stderr}")
    # the rate, not n / seconds: the summary rounds the seconds to 0.1 (2% at 4 s)
    m = re.search(r"(\d+) character\(s\) in [\d.]+ s \((\d+)/s\)", proc.stderr)
    if m is None:
        raise SystemExit(f"no summary line in:\n{proc.stderr}")
    print(
        f"    {' '.join(cmd[2:])}\n    -> {proc.stderr.strip().splitlines()[-1]}", file=sys.stderr
    )
    return int(m.group(1)), float(m.group(2)), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle (default: the shipped default)")
    parser.add_argument("--compare", nargs="*", default=[], help="other bundles, timed alongside")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=None, help="model threads (default: the CLI's, all cores)"
    )
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hccr-bench-") as tmp:
        work = Path(tmp)
        models = [_model_folder(args.model, work)]
        for spec in args.compare:
            models.append(_model_folder(spec, work))
            _check_comparable(models[0][0], models[-1][0])
        for folder, _ in models:
            _ensure_onnx(folder, args.backends)
        t = time.perf_counter()
        lmdb, gnt = _write_inputs(models[0][0], work, args.samples, args.seed)
        print(f"inputs: {args.samples} characters written in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)  # fmt: skip
        labels = " vs ".join(label for _, label in models)
        print(f"model: {labels}; {os.cpu_count()} CPUs; workers={args.workers}, "
              f"batch={args.batch_size}, threads={args.threads or 'all'}")  # fmt: skip
        print(f"{'model':<24} {'input':<6} {'backend':<8} {'chars':>7} {'chars/s':>8} "
              f"{'incl. start-up':>15}")  # fmt: skip
        rows = []
        for backend in args.backends:
            for name, path in (("lmdb", lmdb), ("gnt", gnt)):
                pair = []
                for folder, label in models:  # alternating: both models see the same machine
                    n, rate, wall = _run_cli(path, folder, backend, args)
                    # chars/s: the tool's own figure, from the first batch to the last line
                    # written; the last column adds interpreter start-up, imports and model load
                    print(f"{label[-24:]:<24} {name:<6} {backend:<8} {n:>7} {rate:>8.0f} "
                          f"{n / wall:>11.0f} /s")  # fmt: skip
                    pair.append({"model": label, "input": name, "backend": backend, "chars": n,
                                 "chars_per_s": rate, "chars_per_s_with_startup": n / wall})  # fmt: skip
                for other in pair[1:]:
                    ratio = pair[0]["chars_per_s"] / other["chars_per_s"]
                    tag = f"model / {other['model'][-14:]}"
                    print(f"{tag:<24} {name:<6} {backend:<8} {'':>7} {ratio:>7.2f}x")
                    other["model_over_this"] = ratio
                rows += pair
    if args.json is not None:
        settings = {"workers": args.workers, "batch_size": args.batch_size,
                    "threads": args.threads or os.cpu_count(), "cpus": os.cpu_count()}  # fmt: skip
        report = {"model": models[0][1], "compare": args.compare, **settings, "rows": rows}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
