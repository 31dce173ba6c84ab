"""Every figure of a bundle's model card, measured in one run and written to its metrics.json.

Each figure comes from a user-facing command or another bench script, run here as a
subprocess; metrics.json records the command beside the numbers. Sections whose inputs are not
given are left out (and said so), never filled in.

  - cost: `hccr profile MODEL --json` (params, MACs, FLOPs, bytes, latency at batch 1 and 64,
    1 thread), and the same for a comparison architecture (`--compare`, default teacher_cnn:
    cost does not depend on the weights, so ratios hold before a teacher is trained);
  - synthetic held-out: `hccr eval MODEL --data HELDOUT.lmdb --json` (make it with
    `hccr-data synth --split val --styles font=1`: fonts the training never saw);
  - real handwriting: bench/real_handwriting.py (online `.pot`, offline scan folders);
  - drawn input: bench/drawn_input.py (mouse-like strokes through the demo's path);
  - throughput: bench/recognize.py (`hccr recognize` characters/s, 2 workers).

    python bench/model_metrics.py --model models/gb1-student \\
        --heldout data/gb1-fontval.lmdb \\
        --pot ../shared/data/olhwdb1.0-writer001.pot \\
        --offline ../shared/data/hwdb-train16 ../shared/data/hwdb-onewriter101 \\
        -o models/gb1-student/metrics.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def _run(cmd: list[str]) -> str:
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}")
    return proc.stdout


def _shown(cmd: list[str]) -> str:
    """The command as a user types it (`python -m hccr.cli` -> `hccr`)."""
    words = [
        "python"
        if w == sys.executable
        else f"bench/{Path(w).name}"
        if w.startswith(str(BENCH))
        else w
        for w in cmd
    ]
    text = shlex.join(words)
    return text.replace("python -m hccr.cli", "hccr").replace(
        "python -m data_tools.cli", "hccr-data"
    )


def _json_from(cmd: list[str], out: Path) -> tuple[dict[str, Any], str]:
    """Runs a bench script that writes `--json out`; returns its report and the command."""
    _run([*cmd, "--json", str(out)])
    return json.loads(out.read_text()), _shown([*cmd, "--json", "OUT.json"])


def cost(model: str, compare: str | None) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for key, spec in (("model", model), ("compare", compare)):
        if spec is None:
            continue
        cmd = [sys.executable, "-m", "hccr.cli", "profile", spec, "--threads", "1", "--json"]
        section[key] = {"spec": spec, **json.loads(_run(cmd)), "command": _shown(cmd)}
    if compare is not None:
        m, c = section["model"], section["compare"]
        section["ratios"] = {
            f"{k}_compare_over_model": c[k] / m[k]
            for k in ("params", "flops", "size_bytes", "latency_ms", "latency_ms_b64")
            if m.get(k)
        }
    return section


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="bundle folder or models/ name")
    parser.add_argument("--compare", default="teacher_cnn", help="architecture or bundle for cost ratios ('' for none)")  # fmt: skip
    parser.add_argument("--heldout", type=Path, help="synthetic held-out LMDB (unseen fonts)")
    parser.add_argument("--pot", type=Path, nargs="*", default=[], help="real online .pot files")
    parser.add_argument("--offline", type=Path, nargs="*", default=[], help="real offline scan folders")  # fmt: skip
    parser.add_argument("--drawn-limit", type=int, default=None, help="drawn-input classes (default: all)")  # fmt: skip
    parser.add_argument("--no-drawn", action="store_true", help="skip the drawn-input benchmark")
    parser.add_argument("--peer-python", help="interpreter with rapidocr for the drawn-input peers (see bench/drawn_input.py)")  # fmt: skip
    parser.add_argument("--recognize-samples", type=int, default=10_000, help="0 skips throughput")  # fmt: skip
    parser.add_argument("-o", "--out", type=Path, required=True, help="metrics.json to write")
    args = parser.parse_args()

    py = sys.executable
    metrics: dict[str, Any] = {"model": args.model, "measured": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory(prefix="hccr-metrics-") as tmp:
        work = Path(tmp)
        metrics["cost"] = cost(args.model, args.compare or None)
        if args.heldout is not None:
            cmd = [py, "-m", "hccr.cli", "eval", args.model, "--data", str(args.heldout), "--json"]
            metrics["synthetic_heldout"] = {**json.loads(_run(cmd)), "command": _shown(cmd)}
        else:
            print("synthetic held-out: skipped (no --heldout)", file=sys.stderr)
        if args.pot or args.offline:
            cmd = [py, str(BENCH / "real_handwriting.py"), "--model", args.model]
            if args.pot:
                cmd += ["--pot", *map(str, args.pot)]
            if args.offline:
                cmd += ["--offline", *map(str, args.offline)]
            report, shown = _json_from(cmd, work / "real.json")
            metrics["real_handwriting"] = {"rows": report["rows"], "command": shown}
        else:
            print("real handwriting: skipped (no --pot / --offline)", file=sys.stderr)
        if not args.no_drawn:
            cmd = [py, str(BENCH / "drawn_input.py"), "--models", args.model]
            if args.drawn_limit:
                cmd += ["--limit", str(args.drawn_limit)]
            cmd += ["--peer-python", args.peer_python] if args.peer_python else ["--peers"]
            report, shown = _json_from(cmd, work / "drawn.json")
            metrics["drawn_input"] = {**report, "command": shown}
        if args.recognize_samples > 0:
            cmd = [py, str(BENCH / "recognize.py"), "--model", args.model,
                   "--samples", str(args.recognize_samples), "--backends", "onnx", "torch"]  # fmt: skip
            report, shown = _json_from(cmd, work / "recognize.json")
            metrics["recognize"] = {**report, "command": shown}
    args.out.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    print_summary(metrics)
    return 0


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def print_summary(m: dict[str, Any]) -> None:
    """The model card's tables, in Markdown."""
    print(f"model: {m['model']} (measured {m['measured']})\n")
    print("| data | n | top-1 | top-10 |")
    print("| --- | ---: | ---: | ---: |")
    if "synthetic_heldout" in m:
        r = m["synthetic_heldout"]
        print(f"| synthetic, held-out fonts | {r['n']} | {_pct(r['top1'])} | {_pct(r['top10'])} |")
    for r in m.get("real_handwriting", {}).get("rows", []):  # bench/real_handwriting.py --json
        h = r["hccr"]
        print(f"| real, {r['set']} | {h['n']} | {_pct(h['top1'])} | {_pct(h['top10'])} |")
    drawn = m.get("drawn_input", {})
    for r in drawn.get("models", []):
        print(f"| drawn input, seed {drawn['settings']['seed']} | {r['n']} | {_pct(r['top1'])} | {_pct(r['top10'])} |")  # fmt: skip
    cost = m["cost"]
    print("\n| model | params | FLOPs | bytes | ms @ b1 | ms @ b64 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key in ("model", "compare"):
        if key in cost:
            c = cost[key]
            print(f"| {c['spec']} | {c['params']:,} | {c['flops'] / 1e6:.1f}M | {c['size_bytes']:,} "
                  f"| {c['latency_ms']:.2f} | {c['latency_ms_b64']:.1f} |")  # fmt: skip
    for name, ratio in cost.get("ratios", {}).items():
        print(f"- {name}: {ratio:.1f}x")
    for r in m.get("recognize", {}).get("rows", []):
        print(f"- hccr recognize, {r['input']}, {r['backend']}: {r['chars_per_s']:.0f} chars/s")
    for r in drawn.get("models", []):
        print(f"- drawn input, batch 1, 1 thread: {r['ms_per_char']:.2f} ms/char ({r['name']})")
    for peer in drawn.get("peers", {}).values():
        if "top1" in peer:
            print(f"- peer {peer['name']} ({peer['input']}): top-1 {_pct(peer['top1'])}, "
                  f"{peer['ms_per_char']:.2f} ms/char")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
