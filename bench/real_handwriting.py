"""Accuracy of a model bundle on real CASIA handwriting, through the user-facing commands.

The real files are not part of the project (CASIA licence): point this at your own copies.
  - online: a `.pot` file, packed with `hccr-data pack` (the project's pen renderer) and scored
    with `hccr eval`;
  - offline: folders of scanned character images, recognised with `hccr recognize --format jsonl`;
    the label is the image's parent folder name when that is one character, else the first
    character of the file name.

    python bench/real_handwriting.py --model models/gb1-student \\
        --pot ../shared/data/olhwdb1.0-writer001.pot \\
        --offline ../shared/data/hwdb-train16 ../shared/data/hwdb-onewriter101
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hccr.bundle import Bundle, load_bundle, resolve_model


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0,):
        raise SystemExit(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def online_accuracy(model: Path, bundle: Bundle, pot: Path, tmp: Path) -> dict:
    db = tmp / "online.lmdb"
    _run([sys.executable, "-m", "data_tools.cli", "pack", str(pot), "-o", str(db), "--no-progress",
          "--size", str(bundle.norm.size), "--norm", bundle.norm.method])  # fmt: skip
    return json.loads(
        _run([sys.executable, "-m", "hccr.cli", "eval", str(model), "--data", str(db), "--json"])
    )


def _label(path: Path) -> str:
    return path.parent.name if len(path.parent.name) == 1 else path.stem[0]


def offline_accuracy(model: Path, bundle: Bundle, folder: Path) -> dict:
    """Top-1 / top-10 over the images whose label is one of the model's classes; the others
    (e.g. GB2312 level-2 characters for a level-1 model) are counted apart, never as errors."""
    charset = bundle.charset
    out = _run([sys.executable, "-m", "hccr.cli", "recognize", str(folder), "--model", str(model),
                "--format", "jsonl", "--topk", "10"])  # fmt: skip
    n = top1 = top10 = outside = 0
    for line in out.splitlines():
        row = json.loads(line)
        chars = [c["char"] for c in row["top"]]
        label = _label(Path(row["source"]))
        if label not in charset:
            outside += 1
            continue
        n += 1
        top1 += chars[:1] == [label]
        top10 += label in chars
    return {"n": n, "top1": top1 / max(n, 1), "top10": top10 / max(n, 1), "outside": outside}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="bundle (default: the shipped default)")
    parser.add_argument("--pot", type=Path, nargs="*", default=[])
    parser.add_argument("--offline", type=Path, nargs="*", default=[])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    model = resolve_model(args.model)
    bundle = load_bundle(model)  # its charset and normalisation; the commands load it themselves
    tmp = Path(tempfile.mkdtemp(prefix="hccr-real-"))
    rows = []
    try:
        for pot in args.pot:
            r = online_accuracy(model, bundle, pot, tmp)
            rows.append(("online", pot.name, "hccr-data pack + hccr eval", r))
        for folder in args.offline:
            r = offline_accuracy(model, bundle, folder)
            rows.append(("offline", folder.name, "hccr recognize", r))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"model: {model}")
    print("| real handwriting | n | top-1 | top-10 | not in the model's charset (not scored) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind, source, how, r in rows:
        print(f"| {kind} {source} ({how}) | {r['n']} | {100 * r['top1']:.1f}% "
              f"| {100 * r['top10']:.1f}% | {r.get('outside', '—')} |")  # fmt: skip
    if args.json is not None:
        report = [{"kind": kind, "source": source, "n": r["n"], "top1": r["top1"],
                   "top10": r["top10"], "outside": r.get("outside")}
                  for kind, source, _, r in rows]  # fmt: skip
        args.json.write_text(json.dumps({"model": str(model), "rows": report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
