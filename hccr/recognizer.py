"""The recogniser: any character image in, ranked candidate characters out.

The only inference path: `hccr recognize` and the demo both go through `Recognizer`, and every
pixel goes through `hccr.preprocess` with the bundle's `NormConfig`, exactly as at training.
When the bundle folder holds an export (`model.onnx`, run by onnxruntime, or `model.ts.pt`,
TorchScript) that its record (`model.onnx.json`: SHA-256 of the export and of the weights it was
made from) vouches for, or, without a record, that is at least as new as its weights and agrees
with them on a probe batch, it is used instead of the float model because it is faster;
otherwise a warning says why and the float model runs. `backend=` forces a choice.

A `Recognizer` is safe to share between threads (the demo serves concurrent requests from one):
onnxruntime sessions allow concurrent `run` calls, and the torch paths run under a lock.

A writer profile (`hccr.adapt`, style transfer mapping) maps the feature layer before the final
classifier; it is folded into that classifier, and the backbone runs in the export when the
ONNX graph can be cut before its classifier (`hccr.export.onnx_feature_graph`), else in torch.
A profile is set for every call (`profile=` of `from_bundle`, `set_profile`) or passed per call
(the demo keeps one per browser session).
"""

from __future__ import annotations

import copy
import hashlib
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from hccr.bundle import WEIGHTS_FILE, Bundle, load_bundle, resolve_model
from hccr.charset import Charset
from hccr.preprocess import NormConfig, preprocess, to_model_input, warm_up

if TYPE_CHECKING:
    from hccr.adapt import WriterProfile

ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.ts.pt"
BACKENDS = ("auto", "onnx", "torchscript", "torch")
_PARITY_ATOL = (
    0.05  # max |prob difference| on the probe batch for an export to count as the same model
)

ImageLike = Image.Image | np.ndarray


@dataclass(frozen=True)
class Candidate:
    """One ranked answer: a character and its softmax probability."""

    char: str
    prob: float


class _TorchRunner:
    """Float or TorchScript module; one call at a time (a lock), under inference_mode."""

    def __init__(
        self, module: nn.Module | torch.jit.ScriptModule, channels_last: bool = False
    ) -> None:
        self.module = module.eval()
        self.channels_last = channels_last
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._lock, torch.inference_mode():
            return self.module(x).float()


def onnx_session(path: str | Path | bytes, num_threads: int | None = None):
    """The CPU onnxruntime.InferenceSession the recogniser runs (benchmarks time the same one)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or 0  # 0: onnxruntime's default (all cores)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # Idle pool threads sleep instead of spinning: they share the cores with DataLoader
    # workers (`hccr recognize`) and with other requests (the demo).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = path if isinstance(path, bytes) else str(path)  # a file, or a serialised graph
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class _OnnxRunner:
    """An onnxruntime session; `run` is thread-safe, so no lock."""

    def __init__(self, path: Path | bytes, num_threads: int | None) -> None:
        self.session = onnx_session(path, num_threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        # An export traced with a fixed batch size only accepts that size: feed it in chunks.
        first = inp.shape[0] if inp.shape else None
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.numpy()
        if self.fixed_batch is None:
            return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0]).float()
        outs = []
        b = self.fixed_batch
        for start in range(0, len(arr), b):
            chunk = arr[start : start + b]
            n = len(chunk)
            if n < b:  # pad the last chunk up to the fixed batch size
                chunk = np.concatenate([chunk, np.zeros((b - n, *chunk.shape[1:]), chunk.dtype)])
            outs.append(self.session.run(None, {self.input_name: chunk})[0][:n])
        return torch.from_numpy(np.concatenate(outs)).float()


class _FeatureNet(nn.Module):
    """The network up to the classifier's input: (B, 1, S, S) -> (B, feat_dim)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def _for_inference(model: nn.Module) -> nn.Module:
    """A BatchNorm-folded, channels-last eval copy; `model` itself is left untouched.

    Same outputs; on CPU, oneDNN runs the students' depthwise convolutions ~2.4x faster in
    channels-last layout (student_lw, batch 64, 1 thread: 71 -> 168 images/s).
    """
    from hccr.compress.fold_bn import fold_bn

    return fold_bn(copy.deepcopy(model).eval()).to(memory_format=torch.channels_last)


class Recognizer:
    """Ranks the characters of a charset for character images.

    Args:
        model: the float network (eval mode, CPU): (B, 1, S, S) float -> (B, num_classes) logits.
        charset: class index -> character.
        norm: the preprocessing the model was trained with.
        name: shown by the CLI and the demo.
        path: the bundle folder, when loaded from one.
    """

    def __init__(
        self,
        model: nn.Module,
        charset: Charset,
        norm: NormConfig,
        *,
        name: str = "model",
        path: Path | None = None,
    ) -> None:
        self.model = model.eval()
        self.charset = charset
        self.norm = norm
        self.name = name
        self.path = path
        self.backend = "torch"
        self._runner: Any = _TorchRunner(_for_inference(self.model), channels_last=True)
        self._export: Path | None = None  # the ONNX file in use, when backend == "onnx"
        self._num_threads: int | None = None
        self._feature_runner: Any = None  # built on first use of a writer profile
        self._lock = threading.Lock()
        self._sha256: str | None = None
        self._affine: tuple[torch.Tensor, torch.Tensor] | None = None
        # (profile, its folded classifier), swapped as one object so that a concurrent call
        # never sees one without the other
        self._active: tuple[WriterProfile, tuple[torch.Tensor, torch.Tensor]] | None = None
        # compiled (first run on a machine) or loaded now, so no request waits for it
        warm_up()

    @classmethod
    def from_bundle(
        cls,
        path: str | Path | None = None,
        *,
        backend: str = "auto",
        num_threads: int | None = None,
        profile: str | Path | WriterProfile | None = None,
    ) -> Recognizer:
        """Loads a bundle folder, a run folder or a bundle name in models/ (None: the default).

        Args:
            backend: "auto" (an up-to-date export if present, else the float model), "onnx",
                "torchscript" or "torch".
            num_threads: onnxruntime intra-op threads (None: its default). Torch's thread pool
                is process-wide and left to the caller (`torch.set_num_threads`).
            profile: a writer profile (`hccr adapt`) to apply to every call, or its path.

        Raises:
            BundleError: a missing or broken bundle, or a forced backend without its export.
            ProfileError: a profile that is unreadable or made for other weights or charset.
        """
        rec = cls._from_bundle(path, backend, num_threads)
        if profile is not None:
            rec.set_profile(profile)
        return rec

    @classmethod
    def _from_bundle(
        cls, path: str | Path | None, backend: str, num_threads: int | None
    ) -> Recognizer:
        from hccr.bundle import BundleError

        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        folder = resolve_model(path)
        bundle = load_bundle(folder)
        rec = cls.from_loaded(bundle)
        if backend == "torch":
            return rec
        for kind, filename in (("onnx", ONNX_FILE), ("torchscript", TORCHSCRIPT_FILE)):
            if backend not in ("auto", kind):
                continue
            export = folder / filename
            if not export.is_file():
                if backend == kind:
                    raise BundleError(f"{folder}: no {filename} (export it with `hccr export`)")
                continue
            problem = rec._try_export(kind, export, num_threads)
            if problem is None:
                return rec
            if backend == kind:
                raise BundleError(f"{export}: {problem}")
            warnings.warn(f"{export}: {problem}; using the float model", stacklevel=2)
        return rec

    @classmethod
    def from_loaded(cls, bundle: Bundle) -> Recognizer:
        """Wraps an already loaded bundle (float model)."""
        name = bundle.path.name if bundle.path is not None else bundle.arch
        return cls(bundle.model, bundle.charset, bundle.norm, name=name, path=bundle.path)

    def _try_export(self, kind: str, export: Path, num_threads: int | None) -> str | None:
        """Switches to the export if it is current and agrees with the float model; else says why not."""
        from hccr.export import export_record_status

        weights = export.parent / WEIGHTS_FILE
        has_weights = weights.is_file()
        status = export_record_status(export, weights) if has_weights else None
        if status == "replaced":
            # its check (agreement with the float weights) was passed by another file
            return f"SHA-256 differs from the one in {export.name}.json (replaced after export)"
        if status == "stale":
            return "made from other weights than weights.pt (stale export)"
        current = status == "current"  # else: no record to tell (file times, parity decide)
        if not current and has_weights and export.stat().st_mtime < weights.stat().st_mtime:
            return "older than weights.pt (stale export)"
        try:
            if kind == "onnx":
                runner: Any = _OnnxRunner(export, num_threads)
            else:
                # torch.jit.load warns that TorchScript is deprecated upstream; it still works
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    module = torch.jit.load(str(export), map_location="cpu")
                runner = _TorchRunner(module)
            probe = self._probe_batch()
            got = torch.softmax(runner(probe), dim=1)
        except Exception as e:  # onnxruntime / TorchScript raise their own exception types
            return f"cannot run it: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        want = torch.softmax(self._runner(probe), dim=1)
        if got.shape != want.shape:
            return f"outputs {tuple(got.shape[1:])} classes, bundle has {len(self.charset)}"
        diff = float((got - want).abs().max())
        # An export recorded as made from these weights passed `hccr export`'s top-1 agreement
        # check on real samples; only an unrecorded one is held to float parity (which an int8
        # export, legitimately a little different, would fail).
        if not current and diff > _PARITY_ATOL:
            return f"disagrees with weights.pt (max probability difference {diff:.3f})"
        self._runner = runner
        self.backend = kind
        self._export = export if kind == "onnx" else None
        self._num_threads = num_threads
        return None

    def _probe_batch(self) -> torch.Tensor:
        """A fixed pseudo-character batch (blurred strokes) for export parity checks."""
        gen = torch.Generator().manual_seed(0)
        S = self.norm.size
        x = (torch.rand(4, 1, S // 8, S // 8, generator=gen) > 0.7).float()
        x = torch.nn.functional.interpolate(x, size=(S, S), mode="bilinear", align_corners=False)
        return x.clamp(0, 1)

    @property
    def image_size(self) -> int:
        return self.norm.size

    def prepare(self, image: ImageLike) -> np.ndarray:
        """Any image (size, mode, polarity) -> the normalised (S, S) uint8 ink map the model sees.

        Raises:
            EmptyImageError: the image has no ink.
        """
        return preprocess(image, self.norm)

    def recognize(
        self,
        images: ImageLike | Sequence[ImageLike],
        topk: int = 10,
        profile: WriterProfile | None = None,
    ) -> list[list[Candidate]]:
        """Ranks the top `topk` characters for one image or a sequence of images.

        A single image (a PIL image or one numpy array) gives a one-element list. `profile`
        (checked with `load_profile`) applies to this call only, over the one set for all.

        Raises:
            EmptyImageError: an image has no ink.
        """
        if isinstance(images, Image.Image | np.ndarray):
            images = [images]
        if not images:
            return []
        prepared = np.stack([self.prepare(im) for im in images])
        return self.recognize_prepared(prepared, topk, profile)

    def probabilities(
        self, prepared: np.ndarray | torch.Tensor, profile: WriterProfile | None = None
    ) -> torch.Tensor:
        """Normalised ink maps, uint8 (B, S, S) or (B, 1, S, S) -> (B, num_classes) softmax."""
        return torch.softmax(self._logits(prepared, profile), dim=1)

    def _model_input(self, prepared: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(prepared)
        if x.ndim == 3:
            x = x.unsqueeze(1)  # (B, S, S) -> (B, 1, S, S)
        S = self.norm.size
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, S, S):
            raise ValueError(f"expected normalised images (B, 1, {S}, {S}), got {tuple(x.shape)}")
        return to_model_input(x.contiguous())

    def _logits(
        self, prepared: np.ndarray | torch.Tensor, profile: WriterProfile | None = None
    ) -> torch.Tensor:
        x = self._model_input(prepared)
        active = self._active
        if profile is None and active is None:
            return self._runner(x)
        Wt, c = active[1] if profile is None else self._folded_head(profile)  # type: ignore[index]
        # torch, not numpy: numpy's BLAS threads took 4 ms instead of 20 us for one row when
        # other processes shared the cores; (W A)^T is stored contiguous (37 vs 59 us per row)
        return torch.addmm(c, self._features_runner()(x), Wt)

    # -- writer profiles (hccr.adapt) ------------------------------------------------------

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the bundle's weights.pt (what a writer profile is tied to); for a model
        not loaded from a bundle, of its state_dict's tensors."""
        if self._sha256 is None:
            weights = self.path / WEIGHTS_FILE if self.path is not None else None
            if weights is not None and weights.is_file():
                from hccr.export import file_sha256

                self._sha256 = file_sha256(weights)
            else:
                digest = hashlib.sha256()
                for name, tensor in sorted(self.model.state_dict().items()):
                    digest.update(name.encode())
                    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
                self._sha256 = digest.hexdigest()
        return self._sha256

    @property
    def feat_dim(self) -> int:
        return int(self.classifier_affine()[0].shape[1])

    def classifier_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, c): the float model's final classifier, logits = features @ W.T + c."""
        if self._affine is None:
            from hccr.adapt import classifier_affine

            classifier = getattr(self.model, "classifier", None)
            if classifier is None or not hasattr(self.model, "forward_features"):
                raise ValueError(f"{self.name}: no feature layer / classifier to adapt")
            self._affine = classifier_affine(classifier, int(self.model.feat_dim))
        return self._affine

    def features(self, prepared: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Normalised ink maps (B, S, S) or (B, 1, S, S) -> (B, feat_dim) classifier inputs."""
        return self._features_runner()(self._model_input(prepared))

    def _features_runner(self) -> Any:
        with self._lock:
            if self._feature_runner is None:
                self._feature_runner = self._make_features_runner()
            return self._feature_runner

    def _make_features_runner(self) -> Any:
        torch_runner = _TorchRunner(_FeatureNet(_for_inference(self.model)), channels_last=True)
        if self._export is None:
            return torch_runner
        from hccr.export import onnx_feature_graph

        try:
            graph = onnx_feature_graph(self._export)
            runner = _OnnxRunner(graph, self._num_threads) if graph is not None else None
        except Exception as e:  # onnx / onnxruntime raise their own exception types
            runner, graph = None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if runner is None:
            why = "its graph does not end in a linear classifier" if graph is None else graph
            note = f"{self._export}: {why}; a writer profile runs the float model"
            warnings.warn(note, stacklevel=3)
            return torch_runner
        return runner

    @property
    def profile(self) -> WriterProfile | None:
        """The writer profile applied to every call (`set_profile`), if any."""
        return self._active[0] if self._active is not None else None

    @property
    def profile_backend(self) -> str:
        """Where the backbone runs when a profile is applied ("onnx" or "torch")."""
        return "onnx" if isinstance(self._features_runner(), _OnnxRunner) else "torch"

    def load_profile(self, profile: str | Path | WriterProfile) -> WriterProfile:
        """Reads a profile (or takes one) and checks it was made for this model.

        Raises:
            ProfileError: unreadable, not a profile, or made for other weights or charset.
        """
        from hccr.adapt import WriterProfile

        if isinstance(profile, WriterProfile):
            where = "writer profile"
        else:
            where = str(profile)
            profile = WriterProfile.load(profile)
        profile.check(self.weights_sha256, self.charset, self.feat_dim, where)
        return profile

    def set_profile(self, profile: str | Path | WriterProfile | None) -> WriterProfile | None:
        """Applies a writer profile to every later call (None: back to the plain model)."""
        if profile is None:
            self._active = None
            return None
        loaded = self.load_profile(profile)
        head = self._folded_head(loaded)
        self._features_runner()  # built now, so that the first request does not wait for it
        self._active = (loaded, head)
        return loaded

    def _folded_head(self, profile: WriterProfile) -> tuple[torch.Tensor, torch.Tensor]:
        """((W A)^T contiguous, W b + c), computed once per profile and model (a per-call
        profile included)."""
        head = profile.heads.get(self.weights_sha256)
        if head is None:
            self.load_profile(profile)  # refuses a profile made for another model
            W, c = profile.folded_head(*self.classifier_affine())
            head = profile.heads[self.weights_sha256] = (W.T.contiguous(), c.contiguous())
        return head

    def recognize_prepared(
        self,
        prepared: np.ndarray | torch.Tensor,
        topk: int = 10,
        profile: WriterProfile | None = None,
    ) -> list[list[Candidate]]:
        """Ranks the top `topk` characters for already normalised ink maps (see `prepare`)."""
        if len(prepared) == 0:
            return []
        logits = self._logits(prepared, profile)
        top, indices = logits.topk(min(max(topk, 1), logits.shape[1]), dim=1)
        # softmax of the top k only: exp(logit - logsumexp), no full probability matrix
        values = (top - torch.logsumexp(logits, dim=1, keepdim=True)).exp()
        chars = self.charset.chars
        return [
            [Candidate(chars[i], float(p)) for p, i in zip(row_p, row_i, strict=True)]
            for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
