"""Export for deployment: TorchScript (.pt) or ONNX (.onnx), BatchNorm folded, optional int8.

int8 uses ONNX Runtime static quantisation in QDQ format (`hccr.int8`: per-channel weights,
activations calibrated on samples read from LMDBs, the sensitive layers left in float), not
torch.ao.quantization. Every export is checked against the float eval-mode model: float exports
must match within float tolerance on random input, and, given data, top-1 predictions must
agree on >= 99.5% of the samples, of the check set and of a real-like set (synthetic samples
styled like real handwriting) where given; the report also has both models' top-1 there. A
file that fails its check is not left behind.

The exported graph takes "images": float (B, C, S, S) in [0, 1], C = 1 for an image model and
the trajectory maps' channels for an online one (see
`hccr.preprocess.to_model_input`), any batch size, and returns "logits" (B, num_classes).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hccr.atomic import atomic_write, partial_path
from hccr.compress.fold_bn import fold_bn
from hccr.export_record import (  # noqa: F401  (re-exported: the export's public API)
    export_is_current,
    export_record_status,
    file_sha256,
    record_path,
    write_export_record,
)
from hccr.int8 import Int8Config, LmdbCalibrationReader, quantize_with_config
from hccr.nets.registry import input_channels
from hccr.profiling import DEFAULT_IMAGE_SIZE

MIN_TOP1_AGREEMENT = 0.995
EXPORT_FORMATS = (".pt", ".onnx")


class ExportError(ValueError):
    """An export that failed or whose outputs do not match the float model."""


def _deployable(model: nn.Module) -> nn.Module:
    """A BN-folded eval-mode copy (dropout off, no BatchNorm left)."""
    return fold_bn(copy.deepcopy(model).cpu().eval())


def export_torchscript(
    model: nn.Module, out: str | Path, input_size: int = DEFAULT_IMAGE_SIZE
) -> Path:
    """Traces the BN-folded model and saves it as TorchScript (load with `torch.jit.load`)."""
    out = Path(out)
    folded = _deployable(model)
    example = torch.rand(2, input_channels(model), input_size, input_size)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.trace.*deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message=".*deprecated", category=FutureWarning)
        with torch.no_grad():
            traced = torch.jit.trace(folded, example)
    atomic_write(out, lambda tmp: traced.save(str(tmp)))
    return out


def export_onnx(
    model: nn.Module, out: str | Path, input_size: int = DEFAULT_IMAGE_SIZE, opset: int = 18
) -> Path:
    """Exports the BN-folded model to ONNX with a dynamic batch dimension."""
    import contextlib
    import io

    out = Path(out)
    folded = _deployable(model)
    example = (torch.rand(2, input_channels(model), input_size, input_size),)

    def write(tmp: Path) -> None:
        # the exporter reports progress on stdout; library code stays quiet
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                folded,
                example,
                str(tmp),
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                opset_version=opset,
                dynamo=True,
                external_data=False,
            )

    try:
        atomic_write(out, write)
    except Exception as e:
        if isinstance(e, (ValueError, OSError)):
            raise
        raise ExportError(f"{out}: ONNX export failed: {str(e).splitlines()[0]}") from e
    return out


def load_exported(path: str | Path):
    """A callable float (B, 1, S, S) Tensor -> logits ndarray for a .pt or .onnx export."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x.numpy()})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        module = torch.jit.load(str(path), map_location="cpu")

    def run(x: Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(x).numpy()

    return run


def max_abs_diff(
    model: nn.Module, exported: str | Path, input_size: int = DEFAULT_IMAGE_SIZE, batch: int = 3
) -> float:
    """Largest |logit difference| between the eval-mode model and the export on random input."""
    x = torch.rand(
        batch,
        input_channels(model),
        input_size,
        input_size,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        ref = copy.deepcopy(model).cpu().eval()(x).numpy()
    return float(np.abs(load_exported(exported)(x) - ref).max())


def _check_agreement(
    model: nn.Module, out: Path, data: str | Path | Sequence[str | Path], num: int
) -> dict[str, Any]:
    """Top-1 agreement with the float model and both models' top-1 on `num` samples of `data`."""
    run = load_exported(out)
    model = copy.deepcopy(model).cpu().eval()
    agree = right_float = right_export = total = 0
    with torch.no_grad():
        for images, labels in LmdbCalibrationReader(data, num, batch_size=64).labelled_batches():
            x = torch.from_numpy(images)
            ref = model(x).argmax(1).numpy()
            got = np.asarray(run(x)).argmax(1)
            agree += int((ref == got).sum())
            right_float += int((ref == labels).sum())
            right_export += int((got == labels).sum())
            total += len(ref)
    return {"agreement": agree / total, "top1_float": right_float / total,
            "top1_export": right_export / total, "n": total}  # fmt: skip


def export_model(
    model: nn.Module,
    out: str | Path,
    input_size: int = DEFAULT_IMAGE_SIZE,
    int8: bool = False,
    calib: str | Path | Sequence[str | Path] | None = None,
    check: str | Path | None = None,
    num_calib: int = 512,
    num_check: int = 2000,
    min_agreement: float = MIN_TOP1_AGREEMENT,
    reallike: str | Path | None = None,
    int8_config: Int8Config | None = None,
) -> dict[str, Any]:
    """Exports `model` to `out` (.pt or .onnx) and checks it; returns a report dict.

    Args:
        model: the float network (eval mode is used; BatchNorm is folded in the export).
        out: target file; the suffix picks the format.
        input_size: image side S.
        int8: quantise (ONNX only) with calibration samples from `calib`.
        calib: LMDB(s) of calibration samples (required with `int8`); several share
            `num_calib` equally (a mix of styles).
        check: LMDB whose first `num_check` samples measure top-1 agreement (default: `calib`
            when given). Without data only the random-input float check runs.
        min_agreement: the export is rejected (file removed) below this top-1 agreement, on
            `check` and on `reallike`.
        reallike: LMDB of synthetic samples styled like real handwriting (e.g. `hccr-data synth
            --styles strokes=1 --split val`): agreement and top-1 there too.
        int8_config: the quantisation recipe (default: `Int8Config()`).

    Raises:
        ExportError: bad format / options, or an export that does not match the float model.
    """
    out = Path(out)
    if out.suffix not in EXPORT_FORMATS:
        raise ExportError(
            f"{out}: unknown export format {out.suffix!r}; use .pt (TorchScript) or .onnx"
        )
    if int8 and out.suffix != ".onnx":
        raise ExportError(f"{out}: int8 export needs an .onnx output")
    if int8 and calib is None:
        raise ExportError(f"{out}: int8 export needs calibration data (an LMDB)")
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "path": str(out),
        "format": out.suffix[1:],
        "int8": int8,
        "bn_folded": True,
    }
    try:
        if out.suffix == ".pt":
            export_torchscript(model, out, input_size)
        elif not int8:
            export_onnx(model, out, input_size)
        else:
            cfg = int8_config or Int8Config()
            float_path = partial_path(out).with_suffix(".float.onnx")
            try:
                export_onnx(model, float_path, input_size)
                reader = LmdbCalibrationReader(calib, num_calib)
                kept = quantize_with_config(float_path, out, reader, cfg)
            finally:
                float_path.unlink(missing_ok=True)
            report["int8_recipe"] = {**dataclasses.asdict(cfg), "float_nodes_kept": kept,
                                     "calib_data": [str(p) for p in _as_list(calib)],
                                     "n_calib": reader.num_samples}  # fmt: skip
        report["max_abs_diff"] = max_abs_diff(model, out, input_size)
        if not int8:
            scale = _logit_scale(model, input_size)
            if report["max_abs_diff"] > 1e-3 * max(1.0, scale):
                raise ExportError(
                    f"{out}: export differs from the float model by {report['max_abs_diff']:.3g}"
                )
        data = check if check is not None else calib
        report.update(_check_agreements(model, out, data, reallike, num_check, min_agreement))
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    report["size_bytes"] = out.stat().st_size
    return report


def _check_agreements(
    model: nn.Module,
    out: Path,
    data: str | Path | Sequence[str | Path] | None,
    reallike: str | Path | None,
    num_check: int,
    min_agreement: float,
) -> dict[str, Any]:
    """Top-1 agreement of the export `out` with `model` on `data` and on `reallike` (keys
    prefixed `reallike_`); raises ExportError below `min_agreement`."""
    found: dict[str, Any] = {}
    for key, where in (("", data), ("reallike_", reallike)):
        if where is None:
            continue
        r = _check_agreement(model, out, where, num_check)
        found.update({f"{key}top1_agreement": r["agreement"], f"{key}n_check": r["n"],
                       f"{key}check_data": ", ".join(map(str, _as_list(where))),
                       f"{key}top1_float": r["top1_float"],
                       f"{key}top1_export": r["top1_export"]})  # fmt: skip
        if r["agreement"] < min_agreement:
            raise ExportError(
                f"{out}: top-1 agreement with the float model {r['agreement']:.4f} < "
                f"{min_agreement} on {r['n']} samples of {where}"
            )
    return found


def _as_list(data: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [data] if isinstance(data, (str, Path)) else list(data)


def _logit_scale(model: nn.Module, input_size: int) -> float:
    x = torch.rand(
        3, input_channels(model), input_size, input_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        return float(copy.deepcopy(model).cpu().eval()(x).abs().max())
