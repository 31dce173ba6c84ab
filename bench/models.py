"""Teacher vs students: params, MACs, FLOPs, bytes on disk and CPU latency, with ratios.

Every registered architecture is built at `--num-classes` (default 3,755, GB2312 level 1),
randomly initialised (cost does not depend on the weights) and profiled in this one run with
`hccr.profiling.profile_model`; ratios are teacher / row, so higher means smaller or faster.
MACs and FLOPs (= 2 x MACs) come from torch's flop counter; latency is the median of
BN-folded eval-mode CPU forward passes at batch 1 and batch 64.

  python bench/models.py --threads 1            # the table in BENCHMARKS.md
  python bench/models.py --models teacher_cnn student_lw --json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

from hccr.charset import GB2312_LEVEL1_SIZE
from hccr.nets import create_model, list_models
from hccr.preprocess import DEFAULT_IMAGE_SIZE
from hccr.profiling import compare_table, profile_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=None, help="architectures (default: all registered)"
    )
    parser.add_argument(
        "--reference", default="teacher_cnn", help="ratio denominator row (default: teacher_cnn)"
    )
    parser.add_argument("--num-classes", type=int, default=GB2312_LEVEL1_SIZE)
    parser.add_argument("--input-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for latency (default: 1)"
    )
    parser.add_argument(
        "--repeats", type=int, default=30, help="timed runs at batch 1 (default: 30)"
    )
    parser.add_argument(
        "--repeats-b64", type=int, default=5, help="timed runs at batch 64 (default: 5)"
    )
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)

    names = args.models or list_models()
    if args.reference not in names:
        names = [args.reference, *names]
    names = [args.reference] + [n for n in names if n != args.reference]
    torch.manual_seed(0)
    rows = {}
    for name in names:
        model = create_model(name, num_classes=args.num_classes).eval()
        rows[name] = profile_model(
            model,
            args.input_size,
            args.threads,
            args.repeats,
            args.repeats_b64,
            latency=args.latency,
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(compare_table(rows, args.reference))
    print(
        f"\n{args.num_classes} classes, {args.input_size}px input, {args.threads} thread(s), "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}; "
        f"ratios = {args.reference} / row; FLOPs = 2 x MACs; latency: median, BN folded"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
