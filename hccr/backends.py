"""The recogniser's model runners and the check that lets an export replace the float model.

Every runner maps float32 numpy input (B, 1, S, S) in [0, 1] to float32 numpy logits (B, C), so
the recogniser ranks candidates with numpy whichever runs. The ONNX runner needs onnxruntime
only; torch is imported by the torch runners alone, so a recogniser whose export its record
vouches for (`hccr.export_record`) loads neither torch nor the float weights.
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from hccr.export_record import export_record_status

if TYPE_CHECKING:
    from torch import nn

ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.ts.pt"
# max |prob difference| on the probe batch for an unrecorded export to count as the same model
PARITY_ATOL = 0.05

Runner = Callable[[np.ndarray], np.ndarray]


class TorchRunner:
    """Float or TorchScript module; one call at a time (a lock), under inference_mode."""

    def __init__(self, module: Any, channels_last: bool = False) -> None:
        self.module = module.eval()
        self.channels_last = channels_last
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x))
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with self._lock, torch.inference_mode():
            return self.module(t).float().numpy()


def onnx_session(
    path: str | Path | bytes,
    num_threads: int | None = None,
    initializers: dict[str, np.ndarray] | None = None,
):
    """The CPU onnxruntime.InferenceSession the recogniser runs (benchmarks time the same one).

    `initializers` replace the graph's ones of those names (a writer profile's map,
    `mapped_onnx_runner`); the session keeps their buffers alive (`session.hccr_initializers`).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or 0  # 0: onnxruntime's default (all cores)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # Idle pool threads sleep instead of spinning: they share the cores with DataLoader
    # workers (`hccr recognize`) and with other requests (the demo).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # onnxruntime reads these buffers without copying them: they must outlive the session
    values = [(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a, np.float32)))
              for name, a in (initializers or {}).items()]  # fmt: skip
    for name, value in values:
        options.add_initializer(name, value)
    model = path if isinstance(path, bytes) else str(path)  # a file, or a serialised graph
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    session.hccr_initializers = values
    return session


class OnnxRunner:
    """An onnxruntime session; `run` is thread-safe, so no lock."""

    def __init__(
        self,
        path: Path | bytes,
        num_threads: int | None,
        initializers: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.session = onnx_session(path, num_threads, initializers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        # An export traced with a fixed batch size only accepts that size: feed it in chunks.
        first = inp.shape[0] if inp.shape else None
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        arr = np.ascontiguousarray(x, dtype=np.float32)
        if self.fixed_batch is None:
            return self.session.run(None, {self.input_name: arr})[0].astype(np.float32, copy=False)
        outs = []
        b = self.fixed_batch
        for start in range(0, len(arr), b):
            chunk = arr[start : start + b]
            n = len(chunk)
            if n < b:  # pad the last chunk up to the fixed batch size
                chunk = np.concatenate([chunk, np.zeros((b - n, *chunk.shape[1:]), chunk.dtype)])
            outs.append(self.session.run(None, {self.input_name: chunk})[0][:n])
        return np.concatenate(outs).astype(np.float32, copy=False)


def mapped_onnx_runner(
    graph: bytes, A: np.ndarray, b: np.ndarray, num_threads: int | None
) -> OnnxRunner:
    """An export with a writer profile's map (A, b) at its feature layer's pre-activation: the
    graph of `hccr.onnx_graph.onnx_mapped_graph` with A^T and b as its map's initializers. The
    profile then costs one (d x d) product per character, in the same session."""
    from hccr.onnx_graph import MAP_BIAS, MAP_WEIGHT

    values = {MAP_WEIGHT: np.asarray(A, np.float32).T, MAP_BIAS: np.asarray(b, np.float32)}
    return OnnxRunner(graph, num_threads, values)


def float_runner(model: nn.Module) -> TorchRunner:
    """A BatchNorm-folded, channels-last eval copy of `model` (left untouched) in a runner.

    Same outputs; on CPU, oneDNN runs the students' depthwise convolutions ~2.4x faster in
    channels-last layout (student_lw, batch 64, 1 thread: 71 -> 168 images/s).
    """
    return TorchRunner(_for_inference(model), channels_last=True)


def pre_feature_runner(model: nn.Module) -> TorchRunner:
    """The float network up to its feature layer's pre-activation (before its ReLU: what a
    writer profile maps): (B, C, S, S) -> (B, feat_dim)."""
    from torch import nn

    class PreFeatureNet(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.forward_pre_features(x)

    return TorchRunner(PreFeatureNet(_for_inference(model)), channels_last=True)


def _for_inference(model: nn.Module) -> nn.Module:
    import torch

    from hccr.compress.fold_bn import fold_bn

    return fold_bn(copy.deepcopy(model).eval()).to(memory_format=torch.channels_last)


def probe_batch(size: int, channels: int = 1) -> np.ndarray:
    """A fixed pseudo-character batch (blurred strokes), float32 (4, C, S, S), for export checks
    (every channel the same: the check compares two runners, not what they recognise)."""
    rng = np.random.default_rng(0)
    coarse = (rng.random((4, size // 8, size // 8)) > 0.7).astype(np.float32)
    fine = [cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in coarse]
    return np.repeat(np.clip(np.stack(fine)[:, None], 0, 1), channels, axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def open_export(
    kind: str,
    export: Path,
    weights: Path,
    num_classes: int,
    float_logits: Callable[[], Runner],
    probe: np.ndarray,
    num_threads: int | None,
) -> tuple[Runner | None, str | None]:
    """(runner, None) when `export` may replace the float model, else (None, why not).

    An export whose record (`model.onnx.json`) says it was made from these weights passed
    `hccr export`'s top-1 agreement check on real samples: it only has to run and give
    `num_classes` outputs, and the float model is never loaded (`float_logits` is not called).
    Without a record it must be at least as new as the weights and agree with the float model
    on `probe` (which an int8 export, legitimately a little different, would fail).
    """
    status = export_record_status(export, weights) if weights.is_file() else None
    if status == "replaced":
        # its check (agreement with the float weights) was passed by another file
        return None, f"SHA-256 differs from the one in {export.name}.json (replaced after export)"
    if status == "stale":
        return None, "made from other weights than weights.pt (stale export)"
    current = status == "current"
    if not current and weights.is_file() and export.stat().st_mtime < weights.stat().st_mtime:
        return None, "older than weights.pt (stale export)"
    try:
        if kind == "onnx":
            runner: Runner = OnnxRunner(export, num_threads)
        else:
            import torch

            # torch.jit.load warns that TorchScript is deprecated upstream; it still works
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                runner = TorchRunner(torch.jit.load(str(export), map_location="cpu"))
        got = runner(probe)
    except Exception as e:  # onnxruntime / TorchScript raise their own exception types
        return None, f"cannot run it: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    if got.ndim != 2 or got.shape[1] != num_classes:
        return None, f"outputs {tuple(got.shape[1:])} classes, bundle has {num_classes}"
    if not current:
        diff = float(np.abs(_softmax(got) - _softmax(float_logits()(probe))).max())
        if diff > PARITY_ATOL:
            return None, f"disagrees with weights.pt (max probability difference {diff:.3f})"
    return runner, None
