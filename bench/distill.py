"""Knowledge transfer and compression, measured in one run: the issue-4 "Must show" table.

Rows (same data, epochs and seed for every row):
  teacher                 TEACHER_ARCH trained alone (cross-entropy)
  student                 STUDENT_ARCH trained alone
  student + logit KD      Hinton et al. 2015, from the teacher above
  student + logit&feat KD + FitNets hints on every stage (Romero et al. 2015)
  mutual (DML)            student and a teacher-sized peer trained together from scratch
                          (Zhang et al. 2018)
  low-rank + KT           the teacher decomposed (SVD, --energy), fine-tuned with KD from it
  pruning + KT            the teacher pruned to --prune-flops-ratio of its FLOPs, KD fine-tuning
                          after every step and at the end (Xiao et al. 2017)
Columns: top-1 on --test (default --val), params, FLOPs, weights bytes, CPU latency at batch 1
(1 thread, BN folded, median), and teacher / row ratios. Prints a markdown table; writes
WORK/results.json and WORK/table.md.

A reduced task that trains on a 2-core CPU well under an hour (see --help defaults; 48x48
input keeps the conv cost ~0.56x of 64x64 and the stage layout unchanged):
  python -c "from hccr.charset import Charset; print(*Charset.gb1().chars[:100], sep='\\n')" > c100.txt
  hccr-data synth -o data/b100-train.lmdb --chars c100.txt --per-char 20 --size 48
  hccr-data synth -o data/b100-val.lmdb --chars c100.txt --per-char 10 --size 48 --split val
  python bench/distill.py --data data/b100-train.lmdb --val data/b100-val.lmdb --epochs 6 \\
      --work runs/bench-distill
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from hccr.bundle import is_bundle, load_bundle
from hccr.compress.recipes import LowRankConfig, PruneConfig, run_lowrank, run_prune
from hccr.config import TrainConfig
from hccr.dataset import LmdbDataset
from hccr.distill.objectives import DistillConfig
from hccr.distill.recipes import run_distill
from hccr.evaluate import check_data_matches, evaluate
from hccr.profiling import profile_model
from hccr.run_folder import command_line
from hccr.train import run_train

ROWS = ("teacher", "student", "logit_kd", "feature_kd", "mutual", "lowrank_kt", "prune_kt")
LABELS = {
    "teacher": "teacher",
    "student": "student alone",
    "logit_kd": "student + logit KD",
    "feature_kd": "student + logit & feature KD",
    "mutual": "student, online mutual (DML)",
    "lowrank_kt": "teacher low-rank + KT",
    "prune_kt": "teacher pruned + KT",
}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="training LMDB")
    p.add_argument("--val", required=True, help="validation LMDB (model selection)")
    p.add_argument("--test", help="LMDB for the reported top-1 (default: --val)")
    p.add_argument("--epochs", type=int, default=6, help="epochs of every trained row")
    p.add_argument("--ft-epochs", type=int, default=2, help="final KT fine-tune of compressed rows")
    p.add_argument("--work", required=True, help="folder for the run folders and results")
    p.add_argument("--teacher-arch", default="teacher_cnn")
    p.add_argument(
        "--teacher-kwargs",
        default='{"channels": [32, 64, 128, 192], "feat_dim": 256}',
        help="JSON; the default is a narrow teacher_cnn sized for a 2-core CPU",
    )
    p.add_argument("--student-arch", default="student_lw_050")
    p.add_argument("--student-kwargs", default="", help="JSON constructor kwargs")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD lr of the trained rows")
    p.add_argument("--ft-lr", type=float, default=0.01, help="peak lr of KT fine-tuning")
    p.add_argument("--augment", type=float, default=1.0, help="augmentation strength")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="training device: cpu or cuda")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--hint-weight", type=float, default=1.0)
    p.add_argument("--energy", type=float, default=0.6, help="low-rank SVD energy kept")
    p.add_argument("--prune-flops-ratio", type=float, default=0.3)
    p.add_argument("--prune-step-fraction", type=float, default=0.3)
    p.add_argument("--latency-repeats", type=int, default=30)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--reuse", action="store_true", help="reuse finished run folders in WORK")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    return p


def _train_rows(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    base = TrainConfig(
        data=args.data,
        val=args.val,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=args.augment,
        workers=args.workers,
        seed=args.seed,
        threads=args.threads,
        progress=args.progress,
        device=args.device,
    )
    teacher_cfg = replace(base, arch=args.teacher_arch, model_kwargs=args.teacher_kwargs)
    student_cfg = replace(base, arch=args.student_arch, model_kwargs=args.student_kwargs)
    ft_cfg = replace(base, epochs=args.ft_epochs, lr=args.ft_lr, warmup_epochs=0.0)
    kd = DistillConfig(temperature=args.temperature, alpha=args.alpha, hint_weight=args.hint_weight)
    teacher = work / "teacher"
    logit, feature = replace(kd, kd_mode="logit"), replace(kd, kd_mode="feature")
    mutual = replace(kd, kd_mode="mutual")
    lowrank = LowRankConfig(energy=args.energy)
    prune = PruneConfig(
        flops_ratio=args.prune_flops_ratio, step_fraction=args.prune_step_fraction, step_epochs=1
    )
    peer = ["--peer-arch", args.teacher_arch, "--peer-kwargs", args.teacher_kwargs or "{}"]

    def cmd(verb: str, positional: list[str], configs: list, out: Path, extra=None) -> str:
        return command_line(verb, positional, configs, out, extra)  # recorded in each model card

    jobs = {
        "teacher": lambda out: run_train(
            teacher_cfg, out, command=cmd("train", [], [teacher_cfg], out)
        ),
        "student": lambda out: run_train(
            student_cfg, out, command=cmd("train", [], [student_cfg], out)
        ),
        "logit_kd": lambda out: run_distill(
            student_cfg,
            logit,
            out,
            teacher=str(teacher),
            command=cmd("distill", ["--teacher", str(teacher)], [student_cfg, logit], out),
        ),
        "feature_kd": lambda out: run_distill(
            student_cfg,
            feature,
            out,
            teacher=str(teacher),
            command=cmd("distill", ["--teacher", str(teacher)], [student_cfg, feature], out),
        ),
        "mutual": lambda out: run_distill(
            student_cfg,
            mutual,
            out,
            peer_arch=args.teacher_arch,
            peer_kwargs=json.loads(args.teacher_kwargs or "{}"),
            command=cmd("distill", [], [student_cfg, mutual], out, peer),
        ),
        "lowrank_kt": lambda out: run_lowrank(
            str(teacher),
            ft_cfg,
            lowrank,
            kd,
            out,
            command=cmd("compress lowrank", [str(teacher)], [ft_cfg, lowrank, kd], out),
        ),
        "prune_kt": lambda out: run_prune(
            str(teacher),
            ft_cfg,
            prune,
            kd,
            out,
            command=cmd("compress prune", [str(teacher)], [ft_cfg, prune, kd], out),
        ),
    }
    needed = list(args.rows)
    if any(r in needed for r in ROWS[2:]) and "teacher" not in needed:
        needed.insert(0, "teacher")  # every other row learns from (or is cut from) the teacher
    runs = {}
    for row in ROWS:
        if row not in needed:
            continue
        out = work / row
        if args.reuse and is_bundle(out):
            print(f"[bench] {row}: reusing {out}", file=sys.stderr)
        else:
            if out.exists() and not args.reuse:
                raise SystemExit(f"{out} exists; pass --reuse or choose another --work")
            started = time.perf_counter()
            print(f"[bench] {row}: training into {out}", file=sys.stderr)
            jobs[row](out)
            print(f"[bench] {row}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        runs[row] = out
    return runs


def _measure(runs: dict[str, Path], test: str, args: argparse.Namespace) -> dict[str, dict]:
    dataset = LmdbDataset(test)
    loader = DataLoader(dataset, batch_size=256, num_workers=args.workers)
    results: dict[str, dict[str, Any]] = {}
    for row, path in runs.items():
        bundle = load_bundle(path)
        check_data_matches(test, dataset.norm, bundle.norm, str(path))
        scores = evaluate(bundle.model, loader, torch.device("cpu"))
        cost = profile_model(
            bundle.model,
            input_size=bundle.image_size,
            threads=1,
            repeats=args.latency_repeats,
            repeats_b64=1,
        )
        results[row] = {"run": str(path), **scores, **cost, "kwargs": bundle.kwargs}
    return results


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One line per row; ratios are teacher / row (higher = smaller or faster)."""
    ref = results.get("teacher")
    head = [
        "model",
        "top-1 %",
        "Δ top-1 pp",
        "params",
        "FLOPs",
        "bytes",
        "CPU ms (b=1)",
        "×params",
        "×FLOPs",
        "×bytes",
        "×latency",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, r in results.items():

        def ratio(key: str, r: dict[str, Any] = r) -> str:
            return f"{ref[key] / r[key]:.1f}" if ref and r.get(key) else "-"

        delta = f"{100 * (r['top1'] - ref['top1']):+.1f}" if ref else "-"
        cells = [
            LABELS[row],
            f"{100 * r['top1']:.1f}",
            delta,
            f"{r['params'] / 1e6:.3f}M",
            f"{r['flops'] / 1e6:.1f}M",
            f"{r['size_bytes'] / 1e6:.2f}MB",
            f"{r['latency_ms']:.2f}",
            ratio("params"),
            ratio("flops"),
            ratio("size_bytes"),
            ratio("latency_ms"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    runs = _train_rows(args, work)
    results = _measure(runs, args.test or args.val, args)
    table = markdown_table(results)
    command = "python bench/distill.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    n = next(iter(results.values()))["n"] if results else 0
    header = (
        f"Command: `{command}`\n\nTest set: `{args.test or args.val}` (n={n}); "
        f"{args.epochs} epochs per trained row, {args.ft_epochs} KT fine-tuning epochs "
        f"for compressed rows; seed {args.seed}; latency: 1 thread, BN folded, median; "
        f"total wall time {time.perf_counter() - started:.0f} s.\n"
    )
    (work / "results.json").write_text(json.dumps({"command": command, "rows": results}, indent=2))
    (work / "table.md").write_text(header + "\n" + table + "\n")
    print(header)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
