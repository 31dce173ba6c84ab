"""Train a student with knowledge distillation from a teacher, or by online mutual learning.

--kd-mode logit    soft targets of a trained teacher (Hinton et al. 2015)
--kd-mode feature  soft targets + FitNets hints on every stage (Romero et al. 2015)
--kd-mode mutual   Deep Mutual Learning (Zhang et al. 2018): the student and a peer
                   (--peer-arch, default teacher_cnn or the --teacher's arch) trained together
                   from scratch; the peer's bundle is written to RUN_DIR/peer

A --teacher must fit the run (its charset and preprocessing those of --data and of an --init
student bundle) and be a teacher (more FLOPs than the student, not the student's own network):
otherwise one line naming it, before training starts and before RUN_DIR is written.

Example:
  hccr distill --teacher runs/teacher --arch student_lw --data train.lmdb --val val.lmdb \\
      -o runs/student-kd --kd-mode logit --epochs 30
"""

from __future__ import annotations

import argparse
import json

from hccr.config import TrainConfig, add_config_args, config_from_args
from hccr.distill.objectives import DistillConfig
from hccr.run_folder import command_line, merge_resume_config, read_run_config
from hccr.train import INIT_GIVES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher", metavar="RUN_DIR|BUNDLE", help="trained teacher (required for logit/feature)"
    )
    add_config_args(parser, TrainConfig)
    add_config_args(parser, DistillConfig)
    parser.add_argument("--peer-arch", help="mutual mode: the peer's architecture")
    parser.add_argument("--peer-kwargs", default="", help="mutual mode: JSON kwargs of the peer")
    parser.add_argument("-o", "--out", required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR from checkpoint.pt"
    )


def run(args: argparse.Namespace) -> int:
    from hccr.distill.recipes import run_distill

    cfg = config_from_args(TrainConfig, args)
    dcfg = config_from_args(DistillConfig, args)
    if args.resume:  # flags left out are taken from RUN_DIR/config.json
        cfg = merge_resume_config(cfg, args.out)
        dcfg = merge_resume_config(dcfg, args.out, "distill")
        saved = read_run_config(args.out)
        args.teacher = args.teacher or saved.get("teacher")
        args.peer_arch = args.peer_arch or saved.get("peer_arch")
        if not args.peer_kwargs and saved.get("peer_kwargs"):
            args.peer_kwargs = json.dumps(saved["peer_kwargs"])
    peer_kwargs = None
    if args.peer_kwargs:
        try:
            peer_kwargs = json.loads(args.peer_kwargs)
        except json.JSONDecodeError as e:
            raise ValueError(f"--peer-kwargs is not JSON: {e}") from None
    extra = []
    if args.peer_arch:
        extra += ["--peer-arch", args.peer_arch]
    if args.peer_kwargs:
        extra += ["--peer-kwargs", args.peer_kwargs]
    positional = ["--teacher", str(args.teacher)] if args.teacher else []
    skip = INIT_GIVES if cfg.init else ()  # a recorded --arch would only mislead
    command = command_line("distill", positional, [cfg, dcfg], args.out, extra, skip=skip)
    best = run_distill(
        cfg,
        dcfg,
        args.out,
        teacher=args.teacher,
        peer_arch=args.peer_arch,
        peer_kwargs=peer_kwargs,
        resume=args.resume,
        command=command,
    )
    print(json.dumps({"run_dir": str(args.out), **best}))
    return 0
