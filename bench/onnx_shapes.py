"""ONNX Runtime throughput of network shapes: a bundle, kwargs variants of it, and its pruned forms.

FLOPs do not predict CPU time for these small nets: full-resolution layers are memory-bound and
the int8 / NCHWc kernels work on blocks of channels. This times, in one run, the bundle's own
shape, each `--variant` (JSON kwargs merged over the bundle's), and for each `--prune-ratio` the
bundle pruned to that FLOPs share by `hccr.compress.prune_to_budget` (l1 importance, one step)
with any width (`channel_multiple=1`) and with multiples of 8. Every row is exported to float
ONNX and to int8 (`hccr.export.quantize_onnx_int8`, calibrated on random strokes-like inputs:
speed does not depend on the weights) and run in the recogniser's onnxruntime session at batch
`--batch-size` with `--threads` threads, the rows alternating round by round so that all see the
same machine; the median round is reported, with each row's int8 speed relative to the first row.

  python bench/onnx_shapes.py --model models/gb1-student --variant '{"stem": "pool"}' \
      --prune-ratio 0.8 0.7
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hccr.bundle import load_bundle, resolve_model
from hccr.compress import prune_to_budget
from hccr.export import export_onnx, quantize_onnx_int8
from hccr.nets import create_model, model_kwargs
from hccr.profiling import count_flops
from hccr.recognizer import onnx_session


class _RandomStrokes:
    """A CalibrationDataReader of sparse bright pixels on a dark background, like the inputs."""

    def __init__(self, size: int, batches: int = 4) -> None:
        rng = np.random.default_rng(0)
        self._batches = [
            (rng.random((32, 1, size, size)) > 0.8).astype(np.float32) for _ in range(batches)
        ]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return {"images": self._batches.pop()} if self._batches else None


def _shapes(args: argparse.Namespace) -> tuple[list[tuple[str, torch.nn.Module]], int]:
    bundle = load_bundle(resolve_model(args.model))
    base = bundle.model.eval()
    rows = [(f"{args.model} {json.dumps(model_kwargs(base)['channels'])}", base)]
    for text in args.variant:
        kwargs = {**model_kwargs(base), **json.loads(text)}
        rows.append((f"variant {text}", create_model(bundle.arch, **kwargs).eval()))
    flops = count_flops(base, bundle.image_size)["flops"]
    for ratio in args.prune_ratio:
        for multiple in (1, 8):
            pruned, kwargs, _ = prune_to_budget(
                base,
                flops_target=ratio * flops,
                step_fraction=0.5,
                channel_multiple=multiple,
                input_size=bundle.image_size,
            )
            label = (
                f"pruned to {ratio:g} FLOPs, multiple {multiple} {json.dumps(kwargs['channels'])}"
            )
            rows.append((label, pruned.eval()))
    return rows, bundle.image_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gb1-student", help="bundle (default: the shipped one)")
    parser.add_argument("--variant", nargs="*", default=[], help="JSON kwargs over the bundle's")
    parser.add_argument("--prune-ratio", nargs="*", type=float, default=[])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)

    rows = []
    shapes, size = _shapes(args)
    with tempfile.TemporaryDirectory(prefix="hccr-shapes-") as tmp:
        for i, (label, model) in enumerate(shapes):
            fp32, int8 = Path(tmp) / f"{i}.onnx", Path(tmp) / f"{i}.int8.onnx"
            export_onnx(model, fp32, size)
            quantize_onnx_int8(fp32, int8, _RandomStrokes(size))
            sessions = [onnx_session(p, args.threads) for p in (fp32, int8)]
            flops = count_flops(model, size)["flops"]
            rows.append(
                {"shape": label, "mflops": flops / 1e6, "sessions": sessions, "t": [[], []]}
            )
        x = (np.random.default_rng(1).random((args.batch_size, 1, size, size)) > 0.8).astype(
            np.float32
        )
        for row in rows:  # warm-up
            for s in row["sessions"]:
                s.run(None, {"images": x})
        for _ in range(args.rounds):
            for row in rows:
                for s, times in zip(row["sessions"], row["t"], strict=True):
                    t0 = time.perf_counter()
                    s.run(None, {"images": x})
                    times.append(time.perf_counter() - t0)
    print(f"batch {args.batch_size}, {args.threads} threads, median of {args.rounds} rounds")
    print("| shape | MFLOPs | float img/s | int8 img/s | int8 vs first row |")
    print("| --- | ---: | ---: | ---: | ---: |")
    first = None
    out = []
    for row in rows:
        fps, ips = (args.batch_size / float(np.median(t)) for t in row["t"])
        first = first or ips
        cells = [row["shape"], f"{row['mflops']:.1f}", f"{fps:,.0f}", f"{ips:,.0f}"]
        print("| " + " | ".join(cells) + f" | {ips / first:.2f}x |")
        out.append({"shape": row["shape"], "mflops": row["mflops"], "float": fps, "int8": ips})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
