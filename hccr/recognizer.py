"""The recogniser: any character image (or pen trajectory) in, ranked candidate characters out.

An online bundle (bundle.json `"input": "strokes"`) reads pen trajectories, drawn by
`hccr.trajectory` with the bundle's `TrajectoryConfig` (`recognize_strokes`); an image bundle
given strokes inks them and takes the image path.

The only inference path: `hccr recognize` and the demo both go through `Recognizer`, and every
pixel goes through `hccr.preprocess` with the bundle's `NormConfig`, exactly as at training.
When the bundle folder holds an export (`model.onnx`, run by onnxruntime, or `model.ts.pt`,
TorchScript) that its record (`model.onnx.json`: SHA-256 of the export and of the weights it was
made from) vouches for, or, without a record, that is at least as new as its weights and agrees
with them on a probe batch, it is used instead of the float model because it is faster;
otherwise a warning says why and the float model runs. `backend=` forces a choice. A recorded
ONNX export runs without torch: the float weights, and torch with them, load only when needed
(an export that fails its check, TorchScript, a writer profile, `pre_features`, `model`).

A `Recognizer` is safe to share between threads (the demo serves concurrent requests from one):
onnxruntime sessions allow concurrent `run` calls, and the torch paths run under a lock.

A writer profile (`hccr.adapt`, style transfer mapping) maps the feature layer's
pre-activation, before its ReLU and the classifier. A profile set for every call (`profile=` of
`from_bundle`, `set_profile`) is inserted into a copy of the export's graph (one more
onnxruntime session, `hccr.backends.mapped_onnx_runner`). A profile passed per call (the demo
keeps one per browser session), or one for an export the map cannot be inserted in, runs the
export cut at the pre-activation (`hccr.onnx_graph.onnx_feature_graph`; else the float backbone
in torch), then the map, the ReLU and the classifier in torch.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from hccr.backends import (  # noqa: F401  (onnx_session: benchmarks time the recogniser's session)
    ONNX_FILE,
    TORCHSCRIPT_FILE,
    OnnxRunner,
    float_runner,
    onnx_session,
    open_export,
    probe_batch,
)
from hccr.bundle import WEIGHTS_FILE, BundleError, load_bundle, load_bundle_info, resolve_model
from hccr.charset import Charset
from hccr.preprocess import NormConfig, preprocess, to_model_input, warm_up
from hccr.recognizer_profiles import ProfileMixin
from hccr.trajectory import Strokes, TrajectoryConfig, prepare_strokes, strokes_to_ink
from hccr.trajectory import warm_up as warm_up_trajectory

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hccr.adapt import WriterProfile
    from hccr.bundle import Bundle

BACKENDS = ("auto", "onnx", "torchscript", "torch")

ImageLike = Image.Image | np.ndarray


@dataclass(frozen=True)
class Candidate:
    """One ranked answer: a character and its softmax probability."""

    char: str
    prob: float


class Recognizer(ProfileMixin):
    """Ranks the characters of a charset for character images.

    Args:
        model: the float network (eval mode, CPU): (B, 1, S, S) float -> (B, num_classes)
            logits; None for a bundle whose export does the work (`from_bundle`): it is then
            loaded from `path` only if needed (a writer profile, `pre_features`).
        charset: class index -> character.
        norm: the preprocessing the model was trained with.
        name: shown by the CLI and the demo.
        path: the bundle folder, when loaded from one.
        trajectory: an online model's input features (None: an image model).
    """

    def __init__(
        self,
        model: nn.Module | None,
        charset: Charset,
        norm: NormConfig,
        *,
        name: str = "model",
        path: Path | None = None,
        trajectory: TrajectoryConfig | None = None,
    ) -> None:
        if model is None and path is None:
            raise ValueError("a Recognizer needs a model or the bundle folder to load it from")
        self._model = model.eval() if model is not None else None
        self.charset = charset
        self.norm = norm
        self.trajectory = trajectory
        self.channels = trajectory.channels if trajectory is not None else 1
        self.name = name
        self.path = path
        self.backend = "torch"
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._float: Any = None  # the float model's runner, built on first need
        # the runner in use: the float model's, unless an export replaces it (`from_bundle`)
        self._runner: Any = self._float_runner() if model is not None else None
        self._export: Path | None = None  # the ONNX file in use, when backend == "onnx"
        self._num_threads: int | None = None
        self._feature_runner: Any = None  # built on first use of a writer profile
        self._sha256: str | None = None
        self._affine: tuple[torch.Tensor, torch.Tensor] | None = None
        self._classifier_t: tuple[torch.Tensor, torch.Tensor] | None = None  # (W^T, c)
        self._mapped_graph: bytes | bool | None = None  # the export with a map slot; False: none
        # (profile, its map as tensors, the export with it inserted or None), swapped as one
        # object so that a concurrent call never sees one without the other
        self._active: tuple[WriterProfile, tuple[torch.Tensor, torch.Tensor], Any] | None = None
        # compiled (first run on a machine) or loaded now, so no request waits for it
        warm_up()
        if trajectory is not None:
            warm_up_trajectory()

    @property
    def model(self) -> nn.Module:
        """The float network; loaded from the bundle on first access when an export runs."""
        with self._model_lock:  # not self._lock: the features runner asks for it under that one
            if self._model is None:
                self._model = load_bundle(self.path).model  # type: ignore[arg-type]
            return self._model

    def _float_runner(self) -> Any:
        if self._float is None:
            self._float = float_runner(self.model)
        return self._float

    @classmethod
    def from_bundle(
        cls,
        path: str | Path | None = None,
        *,
        backend: str = "auto",
        num_threads: int | None = None,
        profile: str | Path | WriterProfile | None = None,
    ) -> Recognizer:
        """Loads a bundle folder, a run folder or a bundle name in models/ (None: the default image
        bundle, `hccr.bundle.default_model()`: models/gb1-student).

        With a recorded, current ONNX export (the shipped bundles), neither torch nor the
        weights are loaded; otherwise the float model is (torch imported then).

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
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        folder = resolve_model(path)
        if backend == "torch":
            return cls.from_loaded(load_bundle(folder))
        info = load_bundle_info(folder)
        rec = cls(
            None, info.charset, info.norm, name=folder.name, path=folder, trajectory=info.trajectory
        )
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
        rec._runner = rec._float_runner()
        return rec

    @classmethod
    def from_loaded(cls, bundle: Bundle) -> Recognizer:
        """Wraps an already loaded bundle (float model)."""
        name = bundle.path.name if bundle.path is not None else bundle.arch
        return cls(
            bundle.model,
            bundle.charset,
            bundle.norm,
            name=name,
            path=bundle.path,
            trajectory=bundle.trajectory,
        )

    def _try_export(self, kind: str, export: Path, num_threads: int | None) -> str | None:
        """Switches to the export if `open_export` accepts it; else says why not."""
        runner, problem = open_export(
            kind,
            export,
            export.parent / WEIGHTS_FILE,
            len(self.charset),
            self._float_runner,
            probe_batch(self.norm.size, self.channels),
            num_threads,
        )
        if runner is None:
            return problem
        self._runner = runner
        self.backend = kind
        self._export = export if kind == "onnx" else None
        self._num_threads = num_threads
        return None

    @property
    def image_size(self) -> int:
        return self.norm.size

    @property
    def input_kind(self) -> str:
        """ "image", or "strokes" for an online model (it reads pen trajectories)."""
        return "image" if self.trajectory is None else "strokes"

    def prepare(self, image: ImageLike) -> np.ndarray:
        """Any image (size, mode, polarity) -> the normalised (S, S) uint8 ink map the model sees.

        Raises:
            EmptyImageError: the image has no ink.
            ValueError: this is an online model, which reads strokes, not images.
        """
        if self.trajectory is not None:
            raise ValueError(
                f"{self.name} is an online model: it reads pen strokes (a .pot file, "
                "recognize_strokes), not images; use an image model for images"
            )
        return preprocess(image, self.norm)

    def prepare_strokes(self, strokes: Strokes) -> np.ndarray:
        """Pen strokes [[(x, y), ...], ...] (any units, y down) -> what the model sees: the
        (C, S, S) maps of an online model, or the (S, S) ink map of an image model (inked,
        then `hccr.preprocess`).

        Raises:
            EmptyImageError (EmptyDrawingError): no points. ValueError: malformed strokes.
        """
        if self.trajectory is not None:
            return prepare_strokes(strokes, self.trajectory)
        return preprocess(strokes_to_ink(strokes), self.norm)

    def recognize_strokes(
        self, strokes: Strokes, topk: int = 10, profile: WriterProfile | None = None
    ) -> list[Candidate]:
        """Ranks the top `topk` characters for one drawing: a list of strokes, each a list of
        (x, y) points (any units, y down), e.g. `[[(0, 0), (10, 0)], [(5, -5), (5, 5)]]`.

        Raises:
            EmptyImageError (EmptyDrawingError): no points. ValueError: malformed strokes.
        """
        return self.recognize_prepared(self.prepare_strokes(strokes)[None], topk, profile)[0]

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
        """Normalised ink maps, uint8 (B, S, S) or (B, 1, S, S) -> (B, num_classes) softmax,
        as a torch tensor (imports torch; `recognize_prepared` does not)."""
        import torch

        return torch.softmax(torch.from_numpy(self._logits(prepared, profile)), dim=1)

    def _model_input(self, prepared: np.ndarray | torch.Tensor) -> np.ndarray:
        x = np.asarray(prepared)  # a CPU torch tensor too, without importing torch
        if x.ndim == 3:
            x = x[:, None]  # (B, S, S) -> (B, 1, S, S)
        S, C = self.norm.size, self.channels
        if x.ndim != 4 or tuple(x.shape[1:]) != (C, S, S):
            raise ValueError(f"expected normalised input (B, {C}, {S}, {S}), got {tuple(x.shape)}")
        return to_model_input(np.ascontiguousarray(x))

    def _logits(
        self, prepared: np.ndarray | torch.Tensor, profile: WriterProfile | None = None
    ) -> np.ndarray:
        """float32 (B, num_classes) logits."""
        x = self._model_input(prepared)
        active = self._active
        if profile is None and active is None:
            return self._runner(x)
        if profile is None and active[2] is not None:  # type: ignore[index]
            return active[2](x)  # type: ignore[index]
        return self._profile_logits(x, profile)

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
        k = min(max(topk, 1), logits.shape[1])
        # the k best, best first (argpartition: no full sort of every row)
        indices = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(logits, indices, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        indices = np.take_along_axis(indices, order, axis=1)
        top = np.take_along_axis(top, order, axis=1)
        # softmax of the top k only: exp(logit - logsumexp), no full probability matrix
        peak = logits.max(axis=1, keepdims=True)
        lse = peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
        values = np.exp(top - lse)
        chars = self.charset.chars
        return [
            [Candidate(chars[i], float(p)) for p, i in zip(row_p, row_i, strict=True)]
            for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
