"""Export a model to TorchScript (.pt) or ONNX (.onnx), BatchNorm folded, optionally int8.

MODEL is a bundle folder, a training run folder, the name of a bundle in models/, or a
registered architecture name (randomly initialised; for trying the toolchain). int8 uses ONNX
Runtime static QDQ quantisation calibrated on `--calib`. The export is checked against the
float model: allclose on random input (float exports) and, with data (`--check`, else
`--calib`), top-1 agreement >= 99.5%; a failing export is removed and the command exits 1.

Examples:
  hccr export models/gb1-student -o student.onnx
  hccr export runs/student        # writes runs/student/model.onnx, which `hccr recognize` uses
  hccr export runs/student -o student-int8.onnx --int8 --calib train.lmdb --check val.lmdb
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hccr.commands.profile import add_model_spec_arguments

    parser.add_argument(
        "model", metavar="MODEL", help="bundle, run folder, models/ name or architecture name"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="OUT.pt (TorchScript) or OUT.onnx (default: model.onnx inside the bundle folder, "
        "where `hccr recognize` picks it up)",
    )
    parser.add_argument(
        "--int8", action="store_true", help="int8 static QDQ quantisation (ONNX only)"
    )
    parser.add_argument("--calib", metavar="DB.lmdb", help="calibration samples for --int8")
    parser.add_argument(
        "--check",
        metavar="DB.lmdb",
        help="samples for the top-1 agreement check (default: --calib)",
    )
    parser.add_argument(
        "--num-calib", type=int, default=512, help="calibration samples (default: 512)"
    )
    parser.add_argument(
        "--num-check", type=int, default=2000, help="agreement-check samples (default: 2000)"
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.995,
        help="required top-1 agreement (default: 0.995)",
    )
    add_model_spec_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the export report as JSON")


def run(args: argparse.Namespace) -> int:
    from hccr.commands.profile import load_model_spec
    from hccr.export import ExportError, export_model
    from hccr.profiling import DEFAULT_IMAGE_SIZE

    model, name, bundle_size = load_model_spec(args.model, args.num_classes)
    output = args.output
    if output is None:
        if bundle_size is None:
            raise ExportError(f"{args.model}: an architecture name needs -o OUT.pt|OUT.onnx")
        from hccr.bundle import resolve_model
        from hccr.recognizer import ONNX_FILE

        output = resolve_model(args.model) / ONNX_FILE
    size = args.input_size or bundle_size or DEFAULT_IMAGE_SIZE
    for data in (args.calib, args.check):
        if data is not None:
            from hccr.dataset import LmdbDataset

            data_size = LmdbDataset(data).image_size
            if data_size != size:
                raise ExportError(f"{data}: image size {data_size} != model input size {size}")
    report = export_model(
        model,
        output,
        input_size=size,
        int8=args.int8,
        calib=args.calib,
        check=args.check,
        num_calib=args.num_calib,
        num_check=args.num_check,
        min_agreement=args.min_agreement,
    )
    if args.json:
        print(json.dumps({"model": name, **report}))
    else:
        line = f"{name} -> {report['path']} ({report['size_bytes']} bytes, BN folded"
        line += ", int8 QDQ)" if args.int8 else ")"
        print(line)
        print(f"  max |logit diff| on random input: {report['max_abs_diff']:.3g}")
        if "top1_agreement" in report:
            print(
                f"  top-1 agreement with the float model: {100 * report['top1_agreement']:.2f}% "
                f"on {report['n_check']} samples of {report['check_data']}"
            )
    return 0
