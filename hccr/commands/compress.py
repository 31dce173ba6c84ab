"""Compress a trained model (low-rank, pruning or a strided stem), fine-tuned with knowledge
transfer from it.

  hccr compress lowrank MODEL --data TRAIN.lmdb --val VAL.lmdb -o RUN_DIR [--energy 0.9 | --flops-ratio 0.5]
  hccr compress prune MODEL --data TRAIN.lmdb --val VAL.lmdb -o RUN_DIR [--flops-ratio 0.5 --step-fraction 0.2]
  hccr compress stem MODEL --data TRAIN.lmdb --val VAL.lmdb -o RUN_DIR

MODEL (a bundle or run folder) is both the starting point and the teacher (--kd-mode logit or
feature). The result keeps MODEL's architecture name with explicit ranks / channels / stem
kwargs; the run folder is a bundle of the best fine-tuning epoch. Fine-tuning defaults: 5
epochs, lr 0.01.
"""

from __future__ import annotations

import argparse
import json

from hccr.config import TrainConfig, add_config_args, config_from_args
from hccr.distill.objectives import DistillConfig
from hccr.run_folder import command_line, merge_resume_config
from hccr.train import INIT_GIVES

_FINETUNE_DEFAULTS = {"epochs": 5, "lr": 0.01, "warmup_epochs": 0.0}
_HIDDEN = (*INIT_GIVES, "init")  # architecture and weights come from MODEL


def _add_common(p: argparse.ArgumentParser, method_cls: type | None) -> None:
    p.add_argument("model", metavar="MODEL", help="bundle or run folder to compress")
    add_config_args(p, TrainConfig)
    if method_cls is not None:
        add_config_args(p, method_cls)
    add_config_args(p, DistillConfig)
    p.set_defaults(**_FINETUNE_DEFAULTS)
    for action in p._actions:  # argparse has no public way to drop an added flag
        if action.dest in _HIDDEN:
            action.help = argparse.SUPPRESS
    p.add_argument("-o", "--out", required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hccr.compress.recipes import LowRankConfig, PruneConfig

    sub = parser.add_subparsers(dest="method", required=True, metavar="METHOD")
    _add_common(
        sub.add_parser("lowrank", help="SVD low-rank decomposition + KT fine-tuning"), LowRankConfig
    )
    _add_common(
        sub.add_parser("prune", help="iterative filter pruning + KT fine-tuning"), PruneConfig
    )
    _add_common(
        sub.add_parser(
            "stem",
            help="4x4 stride-2 conv for the full-resolution conv + max-pool + KT fine-tuning",
        ),
        None,
    )


def run(args: argparse.Namespace) -> int:
    from hccr.compress.recipes import (
        LowRankConfig,
        PruneConfig,
        run_lowrank,
        run_prune,
        run_stem,
    )

    if args.init:
        raise ValueError("compress starts from MODEL: drop --init")
    method_cls = {"lowrank": LowRankConfig, "prune": PruneConfig}.get(args.method)
    cfg = config_from_args(TrainConfig, args)
    dcfg = config_from_args(DistillConfig, args)
    mcfg = config_from_args(method_cls, args) if method_cls is not None else None
    if args.resume:  # flags left out are taken from RUN_DIR/config.json
        cfg = merge_resume_config(cfg, args.out)
        dcfg = merge_resume_config(dcfg, args.out, "distill")
        if mcfg is not None:
            mcfg = merge_resume_config(mcfg, args.out, args.method)
    configs = [c for c in (cfg, mcfg, dcfg) if c is not None]
    command = command_line(f"compress {args.method}", [args.model], configs, args.out, skip=_HIDDEN)
    common = {"resume": args.resume, "command": command}
    if mcfg is None:  # stem: nothing to configure but the fine-tune
        best = run_stem(args.model, cfg, dcfg, args.out, **common)
    else:
        recipe = run_lowrank if args.method == "lowrank" else run_prune
        best = recipe(args.model, cfg, mcfg, dcfg, args.out, **common)
    print(json.dumps({"run_dir": str(args.out), **best}))
    return 0
