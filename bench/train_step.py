"""Training-step throughput: NCHW vs channels-last, float32 vs bf16 autocast, in one run.

Each architecture is built at `--num-classes`, randomly initialised, and timed on full SGD steps
(forward, cross-entropy, backward, optimizer step) on random 64x64 batches: in the default NCHW
layout, with model and input in channels-last, which is what `hccr train` and `hccr distill` use
(`--channels-last`, on by default), and channels-last under bf16 autocast, which they use where
`hccr.device.bf16_autocast_pays` (`--amp`, on by default; on a CPU only with bf16 arithmetic,
AMX or AVX512-BF16; `--force-bf16` times it on any CPU). Prints images/s per setting and the ratios. The data
pipeline is left out: this isolates the network's cost.

  python bench/train_step.py                                  # the table in BENCHMARKS.md
  python bench/train_step.py --models 'student_lw_fast:{"depths": [1, 2, 2, 1]}' --json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from hccr.device import bf16_autocast_pays
from hccr.nets import create_model

# ARCH or ARCH:JSON kwargs; a half-width teacher too (a CPU-sized one; no teacher ships yet)
DEFAULT_MODELS = (
    "teacher_cnn",
    'teacher_cnn:{"channels": [32, 64, 128, 256]}',
    "student_lw",
    "student_lw_fast",
)


def images_per_second(
    spec: str,
    num_classes: int,
    batch_size: int,
    size: int,
    channels_last: bool,
    steps: int,
    bf16: bool = False,
) -> float:
    """Median images/s over `steps` timed SGD steps, after two warm-up steps."""
    torch.manual_seed(0)
    arch, _, kwargs = spec.partition(":")
    model = create_model(arch, num_classes=num_classes, **json.loads(kwargs or "{}")).train()
    x = torch.rand(batch_size, 1, size, size)
    y = torch.randint(0, num_classes, (batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        optimizer.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=list(DEFAULT_MODELS), help="ARCH or ARCH:JSON-kwargs"
    )
    parser.add_argument("--num-classes", type=int, default=3755)
    parser.add_argument("--batch-size", type=int, default=128, help="hccr train's default")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per layout")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--force-bf16",
        action="store_true",
        help="time bf16 autocast even where hccr train would not use it (no AMX)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    bf16 = args.force_bf16 or bf16_autocast_pays(torch.device("cpu"))
    for arch in args.models:
        nchw, cl = (
            images_per_second(
                arch, args.num_classes, args.batch_size, args.size, layout, args.steps
            )
            for layout in (False, True)
        )
        row = {"arch": arch, "nchw": nchw, "channels_last": cl, "ratio": cl / nchw}
        if bf16:
            row["channels_last_bf16"] = images_per_second(
                arch, args.num_classes, args.batch_size, args.size, True, args.steps, bf16=True
            )
            row["bf16_ratio"] = row["channels_last_bf16"] / cl
        rows.append(row)

    if args.json:
        print(json.dumps({"threads": args.threads, "batch_size": args.batch_size, "rows": rows}))
        return 0
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, batch {args.batch_size}, {args.size}x{args.size}; "
        f"bf16 autocast in hccr train: {bf16_autocast_pays(torch.device('cpu'))}"
    )
    head = "| arch | NCHW (img/s) | channels-last (img/s) | channels-last / NCHW |"
    if bf16:
        head += " channels-last bf16 (img/s) | bf16 / float32 |"
    print(head)
    print("| --- |" + " ---: |" * (head.count("|") - 2))
    for r in rows:
        line = f"| {r['arch']} | {r['nchw']:.1f} | {r['channels_last']:.1f} | {r['ratio']:.2f}x |"
        if bf16:
            line += f" {r['channels_last_bf16']:.1f} | {r['bf16_ratio']:.2f}x |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
