"""Export a model to TorchScript (.pt) or ONNX (.onnx), BatchNorm folded, optionally int8.

MODEL is a bundle folder, a training run folder, the name of a bundle in models/, or a
registered architecture name (randomly initialised; for trying the toolchain). int8 uses ONNX
Runtime static QDQ quantisation calibrated on `--calib` (several LMDBs: a mix of styles, each
an equal share), weights in 7 bits (full-range int8 saturates on x86 CPUs without VNNI: AVX2
adds products in pairs into int16). The recipe (`hccr.int8.Int8Config`) leaves the first
`--float-first` Conv/Gemm layers and the classifier in float: quantising them is what cost the
shipped student 4 pt on a real writer (BENCHMARKS.md, "int8 on real handwriting"). The export is
checked against the float model: allclose on random input (float exports) and, with data
(`--check`, else `--calib`; and `--reallike`, synthetic samples styled like real handwriting),
top-1 agreement >= 99.5%, reported with both models' top-1; a failing export is removed and the
command exits 1. Whether an int8 export holds on real writers is measured apart, on your own
real data, by `bench/int8_real.py` (the data does not ship).

`--bundle DIR` turns a run folder into a bundle to ship: DIR gets the weights (float16 with
`--half-weights`, and the export is then made from those rounded weights), charset, bundle.json
and a generated model card, and the export goes inside it. A hand-written card already in DIR
(README.md without the generated mark) is kept, and the command says so: its figures are then
yours to update. An export inside its own bundle is recorded in `<export>.json` with its own
SHA-256 and that of the weights it was made from, so `hccr recognize` can tell a current export
from a stale or replaced one.

Examples:
  hccr export models/gb1-student -o student.onnx
  hccr export runs/student        # writes runs/student/model.onnx, which `hccr recognize` uses
  hccr export runs/student --bundle models/my-student --half-weights
  hccr export runs/student -o student-int8.onnx --int8 --calib mix.lmdb strokes.lmdb \\
      --check val.lmdb --reallike reallike.lmdb
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags, one call each: a flat list reads best in the order `--help` shows it."""
    from hccr.int8 import CALIBRATION_METHODS, Int8Config
    from hccr.model_spec import add_model_spec_arguments

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
        "--int8",
        action="store_true",
        help="int8 static QDQ quantisation, 7-bit weights (ONNX only)",
    )
    parser.add_argument(
        "--calib",
        metavar="DB.lmdb",
        nargs="+",
        help="calibration samples for --int8 (several LMDBs share --num-calib equally)",
    )
    parser.add_argument(
        "--check",
        metavar="DB.lmdb",
        help="samples for the top-1 agreement check (default: --calib)",
    )
    parser.add_argument(
        "--reallike",
        metavar="DB.lmdb",
        help="synthetic samples styled like real handwriting: agreement and top-1 there too",
    )
    parser.add_argument(
        "--num-calib", type=int, default=512, help="calibration samples (default: 512)"
    )
    defaults = Int8Config()
    parser.add_argument(
        "--calib-method",
        choices=CALIBRATION_METHODS,
        default=defaults.calib_method,
        help=f"activation ranges (default: {defaults.calib_method})",
    )
    parser.add_argument(
        "--percentile",
        type=float,
        default=defaults.percentile,
        help=f"kept by --calib-method percentile (default: {defaults.percentile})",
    )
    parser.add_argument(
        "--float-first",
        type=int,
        default=defaults.float_first,
        metavar="N",
        help=f"leave the first N Conv/Gemm layers in float (default: {defaults.float_first})",
    )
    parser.add_argument(
        "--float-head",
        action=argparse.BooleanOptionalAction,
        default=defaults.float_head,
        help="leave the classifier (last Gemm) in float (default: on)",
    )
    parser.add_argument(
        "--float-nodes",
        nargs="+",
        default=[],
        metavar="NODE",
        help="further ONNX node names to leave in float",
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
    parser.add_argument(
        "--bundle",
        metavar="DIR",
        type=Path,
        help="write MODEL as a bundle into DIR and the export inside it (default OUT: "
        "DIR/model.onnx)",
    )
    parser.add_argument(
        "--half-weights",
        action="store_true",
        help="with --bundle: store weights.pt as float16 (half the bytes)",
    )
    add_model_spec_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the export report as JSON")


def run(args: argparse.Namespace) -> int:
    from hccr.bundle import WEIGHTS_FILE, load_bundle, resolve_model
    from hccr.export import ExportError, export_model, write_export_record
    from hccr.int8 import Int8Config
    from hccr.model_spec import load_model_spec
    from hccr.preprocess import DEFAULT_IMAGE_SIZE
    from hccr.recognizer import ONNX_FILE

    if args.half_weights and args.bundle is None:
        raise ExportError("--half-weights needs --bundle DIR")
    model, name, bundle_size = load_model_spec(args.model, args.num_classes)
    folder = resolve_model(args.model) if bundle_size is not None else None
    if args.bundle is not None:
        if folder is None:
            raise ExportError(
                f"{args.model}: --bundle needs a bundle or run folder, not an architecture"
            )
        folder = _write_bundle(folder, args.bundle, args.half_weights)
        model = load_bundle(folder).model  # the (rounded) weights the bundle now holds
    output = args.output
    if output is None:
        if folder is None:
            raise ExportError(f"{args.model}: an architecture name needs -o OUT.pt|OUT.onnx")
        output = folder / ONNX_FILE
    size = args.input_size or bundle_size or DEFAULT_IMAGE_SIZE
    for data in [*(args.calib or []), args.check, args.reallike]:
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
        reallike=args.reallike,
        int8_config=Int8Config(
            calib_method=args.calib_method,
            percentile=args.percentile,
            float_first=args.float_first,
            float_head=args.float_head,
            float_nodes=tuple(args.float_nodes),
        ),
    )
    if folder is not None and Path(output).parent.resolve() == folder.resolve():
        # an export placed in its own bundle: record which weights it was made from
        write_export_record(output, folder / WEIGHTS_FILE, report)
    if args.json:
        print(json.dumps({"model": name, **report}))
    else:
        line = f"{name} -> {report['path']} ({report['size_bytes']} bytes, BN folded"
        line += ", int8 QDQ)" if args.int8 else ")"
        print(line)
        print(f"  max |logit diff| on random input: {report['max_abs_diff']:.3g}")
        if args.int8:
            kept = report["int8_recipe"]["float_nodes_kept"]
            print(f"  {args.calib_method} calibration; left in float: {', '.join(kept) or 'none'}")
        for key in ("", "reallike_"):
            if f"{key}top1_agreement" in report:
                print(
                    f"  top-1 agreement with the float model: "
                    f"{100 * report[f'{key}top1_agreement']:.2f}% on {report[f'{key}n_check']} "
                    f"samples of {report[f'{key}check_data']} (top-1: float "
                    f"{100 * report[f'{key}top1_float']:.2f}%, export "
                    f"{100 * report[f'{key}top1_export']:.2f}%)"
                )
    return 0


def _write_bundle(src: Path, dst: Path, half: bool) -> Path:
    """Saves the bundle (or run folder) `src` as a bundle at `dst`; returns `dst`."""
    import sys

    from hccr.bundle import CARD_FILE, BundleError, load_bundle, save_bundle
    from hccr.model_card import is_generated_card

    if dst.exists() and dst.resolve() == src.resolve():
        raise BundleError(f"{dst}: --bundle must differ from MODEL's own folder")
    b = load_bundle(src)
    meta = b.meta
    out = save_bundle(dst, b.model, b.arch, b.kwargs, b.charset, b.norm,
                      metrics=meta.get("metrics"), train_config=meta.get("train_config"),
                      half=half, trajectory=b.trajectory)  # fmt: skip
    card = out / CARD_FILE
    if not is_generated_card(card):
        print(f"kept the hand-written model card {card}: update its figures by hand",
              file=sys.stderr)  # fmt: skip
    return out
