"""The writer-profile half of `hccr.recognizer.Recognizer` (style transfer mapping, `hccr.adapt`).

A profile maps the feature layer before the final classifier and is folded into that
classifier. A profile set for every call (`set_profile`) is written into a copy of the export's
classifier weights (`hccr.backends.folded_onnx_runner`); a profile passed per call runs the
export cut before its classifier (else the float backbone in torch), then the folded classifier.
`Recognizer` sets the state these methods read (`_sha256`, `_affine`, `_feature_runner`,
`_classifier`, `_active`, `_export`, `_lock`, ...) in its `__init__`.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hccr.backends import OnnxRunner, feature_runner, folded_onnx_runner
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

    def features(self, prepared: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Normalised ink maps (B, S, S) or (B, 1, S, S) -> (B, feat_dim) classifier inputs."""
        import torch

        return torch.from_numpy(self._features_runner()(self._model_input(prepared)))

    def _features_runner(self) -> Any:
        with self._lock:
            if self._feature_runner is None:
                self._feature_runner = self._make_features_runner()
            return self._feature_runner

    def _make_features_runner(self) -> Any:
        if self._export is None:
            return feature_runner(self.model)
        from hccr.export import onnx_feature_graph

        try:
            graph = onnx_feature_graph(self._export)
            runner = OnnxRunner(graph, self._num_threads) if graph is not None else None
        except Exception as e:  # onnx / onnxruntime raise their own exception types
            runner, graph = None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if runner is None:
            why = "its graph does not end in a linear classifier" if graph is None else graph
            note = f"{self._export}: {why}; a writer profile runs the float model"
            warnings.warn(note, stacklevel=3)
            return feature_runner(self.model)
        return runner

    @property
    def profile(self) -> WriterProfile | None:
        """The writer profile applied to every call (`set_profile`), if any."""
        return self._active[0] if self._active is not None else None

    @property
    def profile_backend(self) -> str:
        """How a profile is applied: "onnx-folded" (the `set_profile` one, folded into the
        export's classifier), else where the backbone runs before the folded classifier
        ("onnx": the export cut before its classifier, or "torch")."""
        if self._active is not None and self._active[2] is not None:
            return "onnx-folded"
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
        head = self._folded_head(loaded)
        folded = self._folded_runner(loaded)
        if folded is None:
            self._features_runner()  # built now, so that the first request does not wait for it
        self._active = (loaded, head, folded)
        return loaded

    def _folded_runner(self, profile: WriterProfile) -> OnnxRunner | None:
        """The export with the map folded into its classifier (`folded_onnx_runner`), or None
        when no export runs or its classifier is not a float Gemm. Only for `set_profile`: a
        per-call profile (the demo's, refitted at every pick) keeps the cut export + classifier
        path, as a session costs ~8 MB and 10-40 ms to build."""
        if self._export is None:
            return None
        from hccr.export import onnx_classifier

        with self._lock:
            if self._classifier is None:
                self._classifier = onnx_classifier(self._export) or False
        if not self._classifier:
            return None
        return folded_onnx_runner(self._export, self._classifier, profile.A, profile.b,
                                  self._num_threads)  # fmt: skip

    def _folded_head(self, profile: WriterProfile) -> tuple[torch.Tensor, torch.Tensor]:
        """((W A)^T contiguous, W b + c), computed once per profile and model (a per-call
        profile included)."""
        head = profile.heads.get(self.weights_sha256)
        if head is None:
            self.load_profile(profile)  # refuses a profile made for another model
            W, c = profile.folded_head(*self.classifier_affine())
            head = profile.heads[self.weights_sha256] = (W.T.contiguous(), c.contiguous())
        return head
