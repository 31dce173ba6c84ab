"""int8 quantisation of a float ONNX export: ONNX Runtime static QDQ, and the recipe that holds
on real handwriting.

Measured on the shipped student (`bench/int8_real.py`, BENCHMARKS.md "int8 on real
handwriting"): quantising every layer cost 4 pt top-1 on a real online writer while agreeing
with float on 99.8% of synthetic validation samples. Real inputs do not leave the calibrated
ranges (their activations stay inside the synthetic min-max ranges, so percentile clipping only
adds error); they have smaller top-1 margins, and the rounding error of the first layers (the
strided stem and the first depthwise-separable block, full resolution, few weights a channel)
and of quantised logits (3,755 classes in 256 steps) flips them. So the default recipe keeps
those layers in float (`Int8Config.float_first`, `float_head`) and quantises the rest, min-max
calibrated on a mix of synthetic styles.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hccr.atomic import atomic_write, partial_path

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
QUANTISABLE_OPS = ("Conv", "Gemm", "MatMul")


class QuantizeError(ValueError):
    """Quantisation that cannot be done as asked (no calibration samples, nothing to quantise)."""


@dataclass
class Int8Config:
    """What `hccr export --int8` quantises and how its activation ranges are calibrated."""

    # min-max: real activations stay inside the synthetic ranges; percentile clipping (99.99)
    # cost a real writer 1 pt, entropy matched min-max (bench/int8_real.py)
    calib_method: str = "minmax"
    percentile: float = 99.999  # kept by calib_method="percentile"
    # Conv/Gemm nodes left in float, counted from the input: the stem and the first block's
    # depthwise + pointwise convs and the next depthwise conv are where real writers lose
    # (quantising any one of the first two alone costs 2 pt on writer 001)
    float_first: int = 4
    float_head: bool = True  # the classifier in float: quantised logits tie close candidates
    float_nodes: tuple[str, ...] = ()  # further nodes to leave in float, by ONNX node name
    reduce_range: bool = True  # 7-bit weights: full range saturates CPUs without VNNI


def float_node_names(float_onnx: str | Path, cfg: Int8Config) -> list[str]:
    """The Conv/Gemm/MatMul nodes `cfg` leaves in float, in graph order."""
    import onnx

    nodes = [n.name for n in onnx.load(str(float_onnx)).graph.node if n.op_type in QUANTISABLE_OPS]
    keep = set(nodes[: cfg.float_first]) | set(cfg.float_nodes)
    if cfg.float_head and nodes:
        keep.add(nodes[-1])
    unknown = set(cfg.float_nodes) - set(nodes)
    if unknown:
        raise QuantizeError(
            f"{float_onnx}: no Conv/Gemm node named {', '.join(sorted(unknown))}; "
            f"nodes: {', '.join(nodes)}"
        )
    if nodes and keep >= set(nodes):
        raise QuantizeError(
            f"{float_onnx}: every Conv/Gemm node is left in float; nothing to quantise"
        )
    return [n for n in nodes if n in keep]


class LmdbCalibrationReader:
    """`onnxruntime.quantization.CalibrationDataReader` over samples spread evenly through LMDBs.

    Evenly spaced, not the first ones: packed and synthetic data are sorted by class or writer,
    and calibrating on a dozen classes clips the activations of the others. Several LMDBs (a
    mix of styles) share `num_samples` equally, so each style shapes the activation ranges.
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        num_samples: int = 512,
        batch_size: int = 32,
        input_name: str = "images",
    ) -> None:
        from hccr.dataset import LmdbDataset

        paths = [path] if isinstance(path, (str, Path)) else list(path)
        self.datasets = [LmdbDataset(p) for p in paths]
        self.items: list[tuple[int, int]] = []  # (dataset, index)
        for k, ds in enumerate(self.datasets):
            share = num_samples // len(paths) + (k < num_samples % len(paths))
            n = min(share, len(ds))
            self.items += [(k, int(i)) for i in np.linspace(0, len(ds) - 1, n).round()] if n else []
        self.num_samples = len(self.items)
        if self.num_samples == 0:
            raise QuantizeError(f"{', '.join(map(str, paths))}: no samples to calibrate on")
        self.batch_size, self.input_name = batch_size, input_name
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def batches(self) -> Iterator[np.ndarray]:
        """Float (B, 1, S, S) model inputs, in dataset order."""
        for images, _ in self.labelled_batches():
            yield images

    def labelled_batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(float (B, 1, S, S) model inputs, int (B,) class indices), in dataset order."""
        from hccr.preprocess import to_model_input

        for start in range(0, self.num_samples, self.batch_size):
            chunk = [self.datasets[k][i] for k, i in self.items[start : start + self.batch_size]]
            images = torch.stack([image for image, _ in chunk])
            yield to_model_input(images).numpy(), np.array([label for _, label in chunk])

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = ({self.input_name: b} for b in self.batches())
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def quantize_onnx_int8(
    float_onnx: str | Path,
    out: str | Path,
    calibration: Any,
    method: str = "minmax",
    percentile: float = 99.999,
    exclude: Sequence[str] = (),
    reduce_range: bool = True,
) -> Path:
    """Static QDQ int8 quantisation with ONNX Runtime (per-channel weights, uint8 activations).

    Weights use 7 of their 8 bits (`reduce_range`): x86 CPUs without VNNI (AVX2, AVX-512F) add
    u8 x s8 products in pairs into saturating int16, which full-range weights overflow. Measured
    on an AVX2-only EPYC with the shipped student: 99.4% top-1 on drawn input with full-range
    int8, 99.8% with 7-bit weights, 99.9% float (BENCHMARKS.md).

    Args:
        float_onnx: a float ONNX model from `hccr.export.export_onnx`.
        out: the int8 .onnx file to write.
        calibration: an `onnxruntime.quantization.CalibrationDataReader` (e.g. `LmdbCalibrationReader`).
        method: activation ranges from the calibration samples' "minmax", a "percentile" of
            their histogram (outliers clipped) or "entropy" (KL divergence, TensorRT's method).
        percentile: the percentile kept by `method="percentile"`.
        exclude: node names left in float (neither their inputs nor outputs quantised).
        reduce_range: 7-bit weights (see above); False: full-range int8, for VNNI / AMX only.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise QuantizeError(
            f"unknown calibration method {method!r}; known: {', '.join(CALIBRATION_METHODS)}"
        )
    calibrate_method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                        "entropy": CalibrationMethod.Entropy}[method]  # fmt: skip
    out = Path(out)
    prepped = partial_path(out).with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(float_onnx), str(prepped), skip_symbolic_shape=True)
        # histogram calibrators warn about empty bins and print their progress on stdout
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            atomic_write(
                out,
                lambda tmp: quantize_static(
                    str(prepped),
                    str(tmp),
                    calibration,
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    reduce_range=reduce_range,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(exclude),
                    calibrate_method=calibrate_method,
                    extra_options={"CalibPercentile": percentile},
                ),
            )
    finally:
        prepped.unlink(missing_ok=True)
    return out


def quantize_with_config(
    float_onnx: str | Path, out: str | Path, calibration: Any, cfg: Int8Config
) -> list[str]:
    """Quantises `float_onnx` by `cfg`; returns the node names left in float."""
    kept = float_node_names(float_onnx, cfg)
    quantize_onnx_int8(float_onnx, out, calibration, method=cfg.calib_method,
                       percentile=cfg.percentile, exclude=kept, reduce_range=cfg.reduce_range)  # fmt: skip
    return kept
