"""Count a model's parameters, MACs, FLOPs, bytes and CPU latency.

MODEL is a bundle folder, a training run folder, the name of a bundle in models/, or a
registered architecture name (randomly initialised, `--num-classes`, default 3755). MACs and
FLOPs come from torch's flop counter (convolutions and matrix products; FLOPs = 2 x MACs);
latency is the median of CPU forward passes of the BN-folded model at batch 1 and 64.

Examples:
  hccr profile student_lw --json      # {"params": ..., "macs": ..., "flops": ..., "size_bytes": ...,
                                      #  "latency_ms": ..., "latency_ms_b64": ...}
  hccr profile teacher_cnn --compare student_lw --threads 1
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hccr.model_spec import add_model_spec_arguments, load_model_spec
from hccr.preprocess import DEFAULT_IMAGE_SIZE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="bundle, run folder, models/ name or architecture name"
    )
    parser.add_argument(
        "--compare", metavar="OTHER", help="also profile OTHER and print ratios MODEL / OTHER"
    )
    add_model_spec_arguments(parser)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for latency (default: 1)"
    )
    parser.add_argument(
        "--repeats", type=int, default=20, help="timed runs at batch 1 (default: 20)"
    )
    parser.add_argument(
        "--repeats-b64", type=int, default=5, help="timed runs at batch 64 (default: 5)"
    )
    parser.add_argument(
        "--latency", action=argparse.BooleanOptionalAction, default=True, help="measure latency"
    )
    parser.add_argument(
        "--fold-bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the BN-folded model, as exported (default: on)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _profile(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    from hccr.profiling import profile_model

    model, name, size = load_model_spec(spec, args.num_classes)
    size = args.input_size or size or DEFAULT_IMAGE_SIZE
    result = profile_model(
        model, size, args.threads, args.repeats, args.repeats_b64, args.fold_bn, args.latency
    )
    return {"model": name, "arch": getattr(model, "arch", None), **result}


def run(args: argparse.Namespace) -> int:
    from hccr.profiling import compare_table

    first = _profile(args.model, args)
    if args.compare is None:
        if args.json:
            print(json.dumps(first))
        else:
            for key in ("params", "macs", "flops", "size_bytes", "latency_ms", "latency_ms_b64"):
                value = first[key]
                print(
                    f"{key:>15}: {value:.3f}" if isinstance(value, float) else f"{key:>15}: {value}"
                )
            print(f"(input {first['input_size']}px, {args.threads} thread(s), FLOPs = 2 x MACs)")
        return 0
    second = _profile(args.compare, args)
    keys = ("params", "macs", "flops", "size_bytes", "latency_ms", "latency_ms_b64")
    ratios = {k: first[k] / second[k] if first.get(k) and second.get(k) else None for k in keys}
    if args.json:
        print(json.dumps({**first, "compare": second, "ratios": ratios}))
    else:
        print(compare_table({first["model"]: first, second["model"]: second}, first["model"]))
        print(
            f"(ratios: {first['model']} / row; input {first['input_size']}px, {args.threads} thread(s))"
        )
    return 0
