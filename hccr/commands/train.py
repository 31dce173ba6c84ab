"""Train a network on an LMDB (cross-entropy), from scratch or (--init) from a trained bundle;
the run folder is also a bundle.

Example:
  hccr train --data train.lmdb --val val.lmdb --arch teacher_cnn -o runs/teacher --epochs 30
  hccr train ... -o runs/teacher --resume          # continue from RUN_DIR/checkpoint.pt
  hccr train --init models/gb1-student --data mine.lmdb --val val.lmdb -o runs/mine --lr 0.01
  torchrun --nproc-per-node 4 -m hccr.cli train ... # DistributedDataParallel, same flags
"""

from __future__ import annotations

import argparse
import json

from hccr.config import TrainConfig, add_config_args, config_from_args
from hccr.run_folder import command_line, merge_resume_config
from hccr.train import INIT_GIVES, run_train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, TrainConfig)
    parser.add_argument("-o", "--out", required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR from checkpoint.pt"
    )


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(TrainConfig, args)
    if args.resume:
        cfg = merge_resume_config(cfg, args.out)
    skip = INIT_GIVES if cfg.init else ()  # a recorded --arch would only mislead
    command = command_line("train", [], [cfg], args.out, skip=skip)
    best = run_train(cfg, args.out, resume=args.resume, command=command)
    print(json.dumps({"run_dir": str(args.out), **best}))
    return 0
