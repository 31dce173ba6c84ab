"""Export for deployment: TorchScript (.pt) or ONNX (.onnx), BatchNorm folded, optional int8.

int8 uses ONNX Runtime static quantisation in QDQ format (per-channel weights, activations
calibrated on real samples read from an LMDB), not torch.ao.quantization. Every export is
checked against the float eval-mode model: float exports must match within float tolerance on
random input, and, given data, top-1 predictions must agree on >= 99.5% of the samples. A file
that fails its check is not left behind.

The exported graph takes "images": float (B, 1, S, S) in [0, 1] (see
`hccr.preprocess.to_model_input`), any batch size, and returns "logits" (B, num_classes).
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hccr.atomic import atomic_write, atomic_write_text, partial_path
from hccr.compress.fold_bn import fold_bn
from hccr.profiling import DEFAULT_IMAGE_SIZE

MIN_TOP1_AGREEMENT = 0.995
EXPORT_FORMATS = (".pt", ".onnx")


class ExportError(ValueError):
    """An export that failed or whose outputs do not match the float model."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(export: str | Path) -> Path:
    """The JSON record beside an export: `model.onnx` -> `model.onnx.json`."""
    export = Path(export)
    return export.with_name(export.name + ".json")


def write_export_record(export: str | Path, weights: str | Path, report: dict[str, Any]) -> Path:
    """Records which weights an export was made from (their SHA-256) and its check report.

    File times cannot tell a stale export from a current one after a `git clone`, which
    writes files in any order; the hash can.
    """
    record = {**report, "weights_sha256": file_sha256(weights)}
    out = record_path(export)
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    return out


def export_is_current(export: str | Path, weights: str | Path) -> bool | None:
    """Whether `export` was made from `weights` (None: no record to tell)."""
    try:
        record = json.loads(record_path(export).read_text(encoding="utf-8"))
        want = record["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return want == file_sha256(weights)


def _deployable(model: nn.Module) -> nn.Module:
    """A BN-folded eval-mode copy (dropout off, no BatchNorm left)."""
    return fold_bn(copy.deepcopy(model).cpu().eval())


def export_torchscript(
    model: nn.Module, out: str | Path, input_size: int = DEFAULT_IMAGE_SIZE
) -> Path:
    """Traces the BN-folded model and saves it as TorchScript (load with `torch.jit.load`)."""
    out = Path(out)
    folded = _deployable(model)
    example = torch.rand(2, 1, input_size, input_size)
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
    example = (torch.rand(2, 1, input_size, input_size),)

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


class LmdbCalibrationReader:
    """`onnxruntime.quantization.CalibrationDataReader` over samples spread evenly through an LMDB.

    Evenly spaced, not the first ones: packed and synthetic data are sorted by class or writer,
    and calibrating on a dozen classes clips the activations of the others.
    """

    def __init__(
        self,
        path: str | Path,
        num_samples: int = 512,
        batch_size: int = 32,
        input_name: str = "images",
    ) -> None:
        from hccr.dataset import LmdbDataset

        self.dataset = LmdbDataset(path)
        self.num_samples = min(num_samples, len(self.dataset))
        if self.num_samples == 0:
            raise ExportError(f"{path}: no samples to calibrate on")
        self.indices = np.linspace(0, len(self.dataset) - 1, self.num_samples).round().astype(int)
        self.batch_size, self.input_name = batch_size, input_name
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def batches(self) -> Iterator[np.ndarray]:
        """Float (B, 1, S, S) model inputs, in dataset order."""
        from hccr.preprocess import to_model_input

        for start in range(0, self.num_samples, self.batch_size):
            chunk = self.indices[start : start + self.batch_size]
            images = torch.stack([self.dataset[int(i)][0] for i in chunk])
            yield to_model_input(images).numpy()

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = ({self.input_name: b} for b in self.batches())
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def quantize_onnx_int8(float_onnx: str | Path, out: str | Path, calibration: Any) -> Path:
    """Static QDQ int8 quantisation with ONNX Runtime (per-channel 7-bit weights, MinMax calib.).

    Weights use 7 of their 8 bits (`reduce_range`): x86 CPUs without VNNI (AVX2, AVX-512F) add
    u8 x s8 products in pairs into saturating int16, which full-range weights overflow. Measured
    on an AVX2-only EPYC with the shipped student: 99.4% top-1 on drawn input with full-range
    int8, 99.8% with 7-bit weights, 99.9% float (BENCHMARKS.md).

    Args:
        float_onnx: a float ONNX model from `export_onnx`.
        out: the int8 .onnx file to write.
        calibration: an `onnxruntime.quantization.CalibrationDataReader` (e.g. `LmdbCalibrationReader`).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    prepped = partial_path(out).with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(float_onnx), str(prepped), skip_symbolic_shape=True)
        atomic_write(
            out,
            lambda tmp: quantize_static(
                str(prepped),
                str(tmp),
                calibration,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            ),
        )
    finally:
        prepped.unlink(missing_ok=True)
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


def top1_agreement(
    model: nn.Module, exported: str | Path, batches: Iterable[np.ndarray | Tensor]
) -> tuple[float, int]:
    """Share of samples where the export's top-1 class equals the float model's, and the count."""
    run = load_exported(exported)
    model = copy.deepcopy(model).cpu().eval()
    agree = total = 0
    with torch.no_grad():
        for batch in batches:
            x = torch.as_tensor(batch, dtype=torch.float32)
            ref = model(x).argmax(1).numpy()
            got = np.asarray(run(x)).argmax(1)
            agree += int((ref == got).sum())
            total += len(ref)
    if total == 0:
        raise ExportError(f"{exported}: no samples to check agreement on")
    return agree / total, total


def max_abs_diff(
    model: nn.Module, exported: str | Path, input_size: int = DEFAULT_IMAGE_SIZE, batch: int = 3
) -> float:
    """Largest |logit difference| between the eval-mode model and the export on random input."""
    x = torch.rand(batch, 1, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = copy.deepcopy(model).cpu().eval()(x).numpy()
    return float(np.abs(load_exported(exported)(x) - ref).max())


def export_model(
    model: nn.Module,
    out: str | Path,
    input_size: int = DEFAULT_IMAGE_SIZE,
    int8: bool = False,
    calib: str | Path | None = None,
    check: str | Path | None = None,
    num_calib: int = 512,
    num_check: int = 2000,
    min_agreement: float = MIN_TOP1_AGREEMENT,
) -> dict[str, Any]:
    """Exports `model` to `out` (.pt or .onnx) and checks it; returns a report dict.

    Args:
        model: the float network (eval mode is used; BatchNorm is folded in the export).
        out: target file; the suffix picks the format.
        input_size: image side S.
        int8: quantise (ONNX only) with calibration samples from `calib`.
        calib: LMDB of calibration samples (required with `int8`).
        check: LMDB whose first `num_check` samples measure top-1 agreement (default: `calib`
            when given). Without data only the random-input float check runs.
        min_agreement: the export is rejected (file removed) below this top-1 agreement.

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
            float_path = partial_path(out).with_suffix(".float.onnx")
            try:
                export_onnx(model, float_path, input_size)
                quantize_onnx_int8(float_path, out, LmdbCalibrationReader(calib, num_calib))
            finally:
                float_path.unlink(missing_ok=True)
        report["max_abs_diff"] = max_abs_diff(model, out, input_size)
        if not int8:
            scale = _logit_scale(model, input_size)
            if report["max_abs_diff"] > 1e-3 * max(1.0, scale):
                raise ExportError(
                    f"{out}: export differs from the float model by {report['max_abs_diff']:.3g}"
                )
        data = check if check is not None else calib
        if data is not None:
            reader = LmdbCalibrationReader(data, num_check, batch_size=64)
            agreement, n = top1_agreement(model, out, reader.batches())
            report.update(top1_agreement=agreement, n_check=n, check_data=str(data))
            if agreement < min_agreement:
                raise ExportError(
                    f"{out}: top-1 agreement with the float model {agreement:.4f} < {min_agreement} on {n} samples of {data}"
                )
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    report["size_bytes"] = out.stat().st_size
    return report


def _logit_scale(model: nn.Module, input_size: int) -> float:
    x = torch.rand(3, 1, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(copy.deepcopy(model).cpu().eval()(x).abs().max())


# Ops an exporter or quantiser may put between the classifier and the "logits" output.
_PASS_THROUGH_OPS = ("QuantizeLinear", "DequantizeLinear", "Identity", "Cast")


def onnx_feature_graph(path: str | Path) -> bytes | None:
    """The export cut just before its classifier, as a serialised ONNX model, or None.

    Its one output, "features", is the classifier's input (the feature layer a writer profile
    maps, `hccr.adapt`), so a recogniser can run the exported backbone and a re-folded
    classifier. Found by walking back from the first graph output through quantise / dequantise
    nodes to a Gemm (or MatMul + Add); None when the graph ends otherwise.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    node = producer.get(graph.output[0].name)
    while node is not None and node.op_type in _PASS_THROUGH_OPS:
        node = producer.get(node.input[0])
    if node is not None and node.op_type == "Add":  # MatMul + bias
        node = next(
            (producer[i] for i in node.input if i in producer and producer[i].op_type == "MatMul"),
            None,
        )
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        return None
    if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
        return None
    features = node.input[0]
    # keep only the nodes the feature depends on
    needed, kept, stack = {features}, set(), [features]
    while stack:
        producing = producer.get(stack.pop())
        if producing is None or id(producing) in kept:
            continue
        kept.add(id(producing))
        for name in producing.input:
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
    nodes = [n for n in graph.node if id(n) in kept]  # original (topological) order
    nodes.append(helper.make_node("Identity", [features], ["features"]))
    initializers = [t for t in graph.initializer if t.name in needed]
    out = helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, None)
    cut = helper.make_graph(nodes, "features", list(graph.input), [out], initializers)
    cut_model = helper.make_model(cut, opset_imports=list(model.opset_import))
    cut_model.ir_version = model.ir_version
    return cut_model.SerializeToString()
