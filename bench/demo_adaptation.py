"""Demo writer adaptation (demo/writer.py): what a page's profile costs per pen-up and per pick.

Builds the demo over a bundle (no server, no browser: the panel's server functions called
directly, in one thread, as `hccr demo` runs them) and times, interleaved over `--rounds`
rounds of `--calls` calls each, the pen-up handler for one drawn character (a) as the panel
sent it without a session field, (b) from a page with no profile, (c) from a page adapted on
`--picks` picks; and a pick from the 10th on (a labelled sample added and the profile refitted),
with numpy's BLAS on one thread as `hccr demo` sets it (an OPENBLAS_NUM_THREADS already in
the environment wins).

  python bench/demo_adaptation.py                        # the demo's default (gb1-online)
  python bench/demo_adaptation.py --model gb1-teacher --picks 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `hccr demo` (demo/command.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_bundle import TINY_CHARS, char_strokes  # noqa: E402  (stroke medians, no data)

from demo.app import build_demo, load_for_demo  # noqa: E402
from demo.panel import PANEL_ID  # noqa: E402


def sheet(ch: str, k: int) -> list[list[int]]:
    """`ch` on the 400 x 400 sheet, shifted a little with k."""
    return [np.rint(60 + 3 * (k % 5) + s * 280).astype(int).ravel().tolist()
            for s in char_strokes(ch)]  # fmt: skip


def median_ms(fn, request: dict, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(request)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default=None, help="bundle name or folder (default: the demo's, as `hccr demo`)"
    )
    ap.add_argument("--picks", type=int, default=10, help="picks the adapted page has made")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=150, help="calls per case per round")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as `hccr demo`
    rec, _, _ = load_for_demo(args.model)
    panel = next(b for b in build_demo(rec).blocks.values()
                 if getattr(b, "elem_id", None) == PANEL_ID)  # fmt: skip
    pick_ms = []
    for k in range(args.picks):
        ch = TINY_CHARS[k % len(TINY_CHARS)]
        request = {"session": "bench-adapted", "strokes": sheet(ch, k), "char": ch}
        start = time.perf_counter()
        out = panel.pick(request)
        pick_ms.append((time.perf_counter() - start) * 1000)
    assert out["adapt"]["adapted"], out
    probe = sheet("山", 0)
    cases = {
        "pen-up, no session field": {"seq": 1, "strokes": probe},
        "pen-up, page without a profile": {"seq": 1, "strokes": probe, "session": "bench-plain"},
        f"pen-up, page adapted on {args.picks} picks": {
            "seq": 1,
            "strokes": probe,
            "session": "bench-adapted",
        },  # fmt: skip
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, request in cases.items():
            results[name].append(median_ms(panel.recognize_strokes, request, args.calls))
    base = statistics.median(results["pen-up, no session field"])
    print(f"{rec.name} ({rec.backend}), torch threads 1")
    print("| case | handler ms (median of round medians) | ratio |\n| --- | --- | --- |")
    for name, meds in results.items():
        m = statistics.median(meds)
        print(f"| {name} | {m:.3f} | {m / base:.3f} |")
    refits = pick_ms[9:]  # from the 10th pick on each pick refits
    print(f"| a pick from the 10th to the {args.picks}th (add + refit), median ms | "
          f"{statistics.median(refits):.2f} | |")  # fmt: skip


if __name__ == "__main__":
    main()
