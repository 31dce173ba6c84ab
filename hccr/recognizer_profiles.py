"""The writer-profile half of `hccr.recognizer.Recognizer` (style transfer mapping, `hccr.adapt`).

A profile maps the feature layer's pre-activation z: logits = W relu(A z + b) + c. A profile
set for every call (`set_profile`) runs in the export, the map inserted before the feature
layer's ReLU (`hccr.onnx_graph.onnx_mapped_graph`, one more onnxruntime session); a profile
passed per call (the demo's, refitted at every pick) runs the export cut at the pre-activation
(else the float backbone in torch), then the map, the ReLU and the classifier in torch.
`Recognizer` sets the state these methods read (`_sha256`, `_affine`, `_feature_runner`,
`_classifier_t`, `_active`, `_export`, `_lock`, ...) in its `__init__`.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hccr.backends import OnnxRunner, mapped_onnx_runner, pre_feature_runner
from hccr.bundle import WEIGHTS_FILE
from hccr.export_record import file_sha256

if TYPE_CHECKING:
    import torch

    from hccr.adapt import WriterProfile


class ProfileMixin:
    """Writer profiles for a recogniser: the features, the classifier, and a profile's map."""

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the bundle's weights.pt (what a writer profile is tied to); for a model
        not loaded from a bundle, of its state_dict's tensors."""
        if self._sha256 is None:
            weights = self.path / WEIGHTS_FILE if self.path is not None else None
            if weights is not None and weights.is_file():
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

    def pre_features(self, prepared: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Normalised model inputs (B, S, S) or (B, C, S, S) -> (B, feat_dim) pre-activations of
        the feature layer (before its ReLU): what a writer profile maps."""
        import torch

        return torch.from_numpy(self._features_runner()(self._model_input(prepared)))

    def _features_runner(self) -> Any:
        with self._lock:
            if self._feature_runner is None:
                self._feature_runner = self._make_features_runner()
            return self._feature_runner

    def _make_features_runner(self) -> Any:
        if self._export is None:
            return pre_feature_runner(self.model)
        from hccr.onnx_graph import onnx_feature_graph

        try:
            graph = onnx_feature_graph(self._export)
            runner = OnnxRunner(graph, self._num_threads) if graph is not None else None
        except Exception as e:  # onnx / onnxruntime raise their own exception types
            runner, graph = None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if runner is None:
            why = graph or "its graph does not end in feature layer, ReLU, classifier"
            note = f"{self._export}: {why}; a writer profile runs the float model"
            warnings.warn(note, stacklevel=3)
            return pre_feature_runner(self.model)
        return runner

    @property
    def profile(self) -> WriterProfile | None:
        """The writer profile applied to every call (`set_profile`), if any."""
        return self._active[0] if self._active is not None else None

    @property
    def profile_backend(self) -> str:
        """How a profile is applied: "onnx-mapped" (the `set_profile` one, inserted into the
        export), else where the backbone runs before the map and the classifier ("onnx": the
        export cut at the pre-activation, or "torch")."""
        if self._active is not None and self._active[2] is not None:
            return "onnx-mapped"
        return "onnx" if isinstance(self._features_runner(), OnnxRunner) else "torch"

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
        tensors = self._profile_tensors(loaded)
        mapped = self._mapped_runner(loaded)
        if mapped is None:
            self._features_runner()  # built now, so that the first request does not wait for it
            self._head()
        self._active = (loaded, tensors, mapped)
        return loaded

    def _mapped_runner(self, profile: WriterProfile) -> OnnxRunner | None:
        """The export with the map inserted (`mapped_onnx_runner`), or None when no export runs
        or its graph has no feature layer -> ReLU -> classifier to insert it in. Only for
        `set_profile`: a per-call profile (the demo's, refitted at every pick) keeps the cut
        export + torch path, as a session costs ~8 MB and 4-7 ms to build."""
        if self._export is None:
            return None
        from hccr.onnx_graph import onnx_mapped_graph

        with self._lock:
            if self._mapped_graph is None:
                self._mapped_graph = onnx_mapped_graph(self._export, self.feat_dim) or False
        if not self._mapped_graph:
            return None
        return mapped_onnx_runner(self._mapped_graph, profile.A, profile.b, self._num_threads)

    def _profile_tensors(self, profile: WriterProfile) -> tuple[torch.Tensor, torch.Tensor]:
        """(A^T contiguous, b) as torch tensors, made once per profile and model, after
        checking that the profile was made for this model (a per-call profile included)."""
        tensors = profile.tensors.get(self.weights_sha256)
        if tensors is None:
            import torch

            self.load_profile(profile)  # refuses a profile made for another model
            At = torch.from_numpy(np.ascontiguousarray(np.asarray(profile.A, np.float32).T))
            b = torch.from_numpy(np.asarray(profile.b, np.float32))
            tensors = profile.tensors[self.weights_sha256] = (At, b)
        return tensors

    def _head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W^T contiguous, c): the float classifier for the per-call profile path."""
        if self._classifier_t is None:
            W, c = self.classifier_affine()
            self._classifier_t = (W.T.contiguous(), c.contiguous())
        return self._classifier_t

    def _profile_logits(self, x: np.ndarray, profile: WriterProfile | None) -> np.ndarray:
        """W relu(A z + b) + c for model inputs `x`, with `profile` or else the one set."""
        import torch

        At, b = self._active[1] if profile is None else self._profile_tensors(profile)  # type: ignore[index]
        Wt, c = self._head()
        # torch, not numpy: numpy's BLAS threads took 4 ms instead of 20 us for one row when
        # other processes shared the cores; the transposed weights are stored contiguous
        z = torch.from_numpy(self._features_runner()(x))
        return torch.addmm(c, torch.relu(torch.addmm(b, z, At)), Wt).numpy()
