"""Evaluate a model's top-1/5/10 accuracy on an LMDB.

MODEL is a bundle folder, a training run folder, or the name of a bundle in models/. The
LMDB's image size and normalisation must match the model's (one-line error otherwise); an
LMDB with another charset is scored by character: samples whose label the model does not know
are not scored, their count is printed in a note (and is "outside" in the JSON), and an LMDB with
no class in common with the model is an error.

Example:
  hccr eval runs/student --data test.lmdb --json   # {"top1": ..., "top5": ..., "top10": ..., "n": ...}
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.data import DataLoader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="bundle folder, run folder, or models/ name")
    parser.add_argument("--data", required=True, metavar="DB.lmdb", help="LMDB to evaluate on")
    parser.add_argument("--batch-size", type=int, default=256, help="(default: 256)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default: 2)")
    parser.add_argument("--device", default="", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar"
    )


def run(args: argparse.Namespace) -> int:
    from hccr.bundle import load_bundle, resolve_model
    from hccr.dataset import LmdbDataset
    from hccr.evaluate import (
        DataMismatchError,
        check_data_matches,
        check_input_matches,
        evaluate,
        label_map,
    )

    path = resolve_model(args.model)
    bundle = load_bundle(path)
    dataset = LmdbDataset(args.data)
    check_data_matches(args.data, dataset.norm, bundle.norm, str(path))
    check_input_matches(args.data, dataset, bundle.trajectory, str(path))
    mapping = label_map(dataset.charset, bundle.charset)
    if mapping is not None and not bool((mapping >= 0).any()):
        raise DataMismatchError(
            f"{args.data}: none of its {len(dataset.charset)} classes is one of the "
            f"{len(bundle.charset)} classes of model {path}; nothing to score"
        )
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loader = DataLoader(
        dataset, batch_size=args.batch_size, num_workers=args.workers, shuffle=False
    )
    scores = evaluate(
        bundle.model.to(device),
        loader,
        device,
        labels_to_model=mapping,
        amp=True,
        progress=args.progress,
    )
    outside = scores.get("outside", 0)
    if scores["n"] == 0 and outside:
        raise DataMismatchError(
            f"{args.data}: no sample has a label among the {len(bundle.charset)} classes of "
            f"model {path}; nothing to score"
        )
    if outside:
        print(
            f"hccr eval: note: {outside} sample(s) with labels outside the model's charset "
            f"({len(bundle.charset)} classes) were not scored",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"{path} on {args.data}: n={scores['n']}")
        for k in ("top1", "top5", "top10"):
            print(f"  {k}: {100 * scores[k]:.2f}%")
    return 0
