"""Writer adaptation by style transfer mapping (STM): an affine map of the feature layer.

Zhang & Liu, "Writer adaptation with style transfer mapping", IEEE TPAMI 35(7):1773-1787, 2013
(doi:10.1109/TPAMI.2012.239); applied to a CNN's last feature layer in Zhang, Bengio & Liu,
"Online and offline handwritten Chinese character recognition: a comprehensive study and new
benchmark", Pattern Recognition 61:348-360, 2017 (arXiv:1606.05763).

A writer's feature vectors s_i are mapped by s -> A s + b towards target points t_i in the space
the classifier was trained in, with confidences w_i:

    min_{A,b}  sum_i w_i ||A s_i + b - t_i||^2 + beta ||A - I||_F^2 + gamma ||b||^2

which has the closed form (TPAMI 2013, eqs. 6-9)

    w^ = sum w_i + gamma,  s^ = sum w_i s_i,  t^ = sum w_i t_i
    Q  = sum w_i t_i s_i^T - t^ s^^T / w^ + beta I
    P  = sum w_i s_i s_i^T - s^ s^^T / w^ + beta I
    A  = Q P^-1,   b = (t^ - A s^) / w^.

The features are the feature layer's pre-activation z (FC + BN, before its ReLU), and the logits
W relu(A z + b) + c. After the ReLU about half of the 128 entries are zero for any one
character, and a map there cannot move them; before it, every entry moves (writer 001, k = 200,
online bundle: error -23% supervised before the ReLU, -17% after it; bench/adaptation_prerelu.py).
A profile costs one (d x d) product per character, in the export
(`hccr.onnx_graph.onnx_mapped_graph`) or after it.

Targets are class prototypes: the class of a labelled sample (supervised) or the model's own
top-1 answer, weighted by its probability, for unlabelled samples (unsupervised; the paper's
confidence-weighted variant, with low-confidence samples left out). Prototypes are the
classifier's weight rows, relu(W_k) at unit length scaled to the writer's mean feature norm
after the ReLU (the direction the classifier scores highest for class k), or the class means of
z over data like the training set (`class_means`, `hccr adapt --prototypes`; the paper's
choice). The rows need no data, and did better on the synthetic writers the settings are chosen
on (BENCHMARKS.md, "Writer adaptation settings from synthetic writers").
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from hccr.atomic import atomic_write

if TYPE_CHECKING:
    from hccr.charset import Charset
    from hccr.recognizer import Recognizer

PROFILE_FORMAT = "hccr-writer-profile"
# 2: the map acts on the feature layer's pre-activation; 1 (refused): on the classifier's input
PROFILE_VERSION = 2
MODES = ("supervised", "unsupervised")


class ProfileError(ValueError):
    """A writer profile that cannot be read, or was made for another model; one line naming the file."""


@dataclass
class StmConfig:
    """Style transfer mapping settings (Zhang & Liu 2013)."""

    # Strength of the pull of A towards the identity, in samples: beta = prior * mean ||s||^2 / d.
    # Chosen on synthetic writers only (bench/adaptation_synth.py, k = 200; no real writer played
    # a part): the online bundle's 8 styled trajectory writers are best at 800 (-15.5%; -13.8%
    # at 400, -14.9% at 1200), the image student's 12 font, skeleton and stroke writers gain
    # little at any prior, a little more up to 1200 (-2.2% at 400, -3.6% at 800, -4.6% at 1200).
    # Writers that repeat their habits as well lean the same way (-12.0% at 400, -14.0% at 800);
    # writers with stroke-level habits too are level from 400 to 1200 (-18.1% at 400, -18.3% at
    # 600, -17.9% at 800), with no trend in k from 50 to 400.
    # One default for both (BENCHMARKS.md, "Writer adaptation settings").
    prior: float = 800.0
    # The same for --unsupervised (trajectory writers: -16.0% at 600 and 800, -14.4% at 400 and
    # 1200; image writers -2.8% at 400, level from 600 to 1200 at -3.1% to -3.2%).
    prior_unsupervised: float = 800.0
    # Pull of b towards 0, as a fraction of the summed confidences (0: b is free, as the paper's
    # experiments set it; 1 did no better on the synthetic writers).
    bias_prior: float = 0.0
    # Fewer samples leave a map that is all regulariser (writer 001: 20 samples gain < 1 point).
    min_samples: int = 10
    # Unsupervised: samples whose top-1 probability is below this are left out. 0 (keep all,
    # weighted by probability) does as well as a 0.3 cut on the synthetic writers (image: -2.8%
    # both; trajectory: -14.4% vs -15.0%): the confident answers are the ones the model already
    # gets right.
    min_confidence: float = 0.0


def fit_stm(
    sources: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    prior: float = StmConfig.prior,
    bias_prior: float = StmConfig.bias_prior,
) -> tuple[np.ndarray, np.ndarray]:
    """The closed-form STM map (A, b) taking `sources` (N, d) towards `targets` (N, d).

    Args:
        weights: per-sample confidences w_i >= 0 (None: all 1).
        prior: beta in samples (see `StmConfig.prior`).
        bias_prior: gamma as a fraction of sum(w).
    """
    S = np.asarray(sources, np.float64)  # (N, d)
    T = np.asarray(targets, np.float64)  # (N, d)
    w = np.ones(len(S)) if weights is None else np.asarray(weights, np.float64)
    d = S.shape[1]
    # beta in units of one sample's energy per dimension, so `prior` means "this many samples"
    beta = prior * float((S**2).sum(1).mean()) / d
    w_hat = float(w.sum()) * (1.0 + bias_prior)
    s_hat = w @ S  # (d,)
    t_hat = w @ T
    ws = S * w[:, None]
    Q = T.T @ ws - np.outer(t_hat, s_hat) / w_hat + beta * np.eye(d)
    P = S.T @ ws - np.outer(s_hat, s_hat) / w_hat + beta * np.eye(d)
    A = np.linalg.solve(P.T, Q.T).T  # Q P^-1 (P is symmetric positive definite)
    b = (t_hat - A @ s_hat) / w_hat
    return A.astype(np.float32), b.astype(np.float32)


def classifier_affine(classifier: nn.Module, feat_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, c) with classifier(f) == f @ W.T + c, for any affine layer (Linear or low-rank)."""
    with torch.no_grad():
        probe = torch.cat([torch.zeros(1, feat_dim), torch.eye(feat_dim)])  # (1 + d, d)
        out = classifier.eval()(probe).float()
    c = out[0]
    return (out[1:] - c).T.contiguous(), c.clone()  # W: (num_classes, d)


def weight_prototypes(W: torch.Tensor | np.ndarray, scale: float) -> np.ndarray:
    """Class prototypes from classifier rows: relu(W_k), unit length, times `scale`."""
    P = np.maximum(np.asarray(W, np.float64), 0.0)
    norms = np.linalg.norm(P, axis=1, keepdims=True)
    return P / np.maximum(norms, 1e-12) * scale


def class_means(
    features: np.ndarray, labels: np.ndarray, num_classes: int, fallback: np.ndarray
) -> np.ndarray:
    """Per-class mean feature; classes without samples take their `fallback` row."""
    sums = np.zeros((num_classes, features.shape[1]))
    np.add.at(sums, labels, features)
    counts = np.bincount(labels, minlength=num_classes)
    means = np.array(fallback, np.float64, copy=True)
    seen = counts > 0
    means[seen] = sums[seen] / counts[seen, None]
    return means


def charset_sha256(charset: Charset) -> str:
    return hashlib.sha256("\n".join(charset.chars).encode("utf-8")).hexdigest()


@dataclass
class WriterProfile:
    """One writer's STM map for one model's weights and charset."""

    A: np.ndarray  # (d, d)
    b: np.ndarray  # (d,)
    weights_sha256: str
    charset_sha256: str
    num_classes: int
    num_samples: int
    mode: str = "supervised"
    meta: dict[str, Any] = field(default_factory=dict)  # model name, prototypes, config
    # the map as torch tensors (A^T contiguous, b), by the weights SHA-256 of each model it was
    # checked against, so that a per-call profile is checked and converted once
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def feat_dim(self) -> int:
        return int(self.A.shape[0])

    def check(self, weights_sha256: str, charset: Charset, feat_dim: int, where: str) -> None:
        """Raises ProfileError unless the profile was made for these weights and charset."""
        if self.charset_sha256 != charset_sha256(charset) or self.num_classes != len(charset):
            raise ProfileError(
                f"{where}: made for another charset ({self.num_classes} classes), not this "
                f"model's ({len(charset)} classes); adapt again with `hccr adapt`"
            )
        if self.weights_sha256 != weights_sha256:
            raise ProfileError(
                f"{where}: made for other weights (sha256 {self.weights_sha256[:12]}...) than "
                f"this model's ({weights_sha256[:12]}...); adapt again with `hccr adapt`"
            )
        if self.feat_dim != feat_dim:
            raise ProfileError(
                f"{where}: map is {self.feat_dim}-d, the model's feature {feat_dim}-d"
            )

    def to_bytes(self) -> bytes:
        meta = {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "weights_sha256": self.weights_sha256,
            "charset_sha256": self.charset_sha256,
            "num_classes": self.num_classes,
            "num_samples": self.num_samples,
            "mode": self.mode,
            **self.meta,
        }
        buf = io.BytesIO()
        np.savez(buf, A=np.asarray(self.A, np.float32), b=np.asarray(self.b, np.float32),
                 meta=np.array(json.dumps(meta, ensure_ascii=False)))  # fmt: skip
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Writes the profile (a .npz: A, b, JSON meta) atomically: complete or not at all."""
        path = Path(path)
        data = self.to_bytes()
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
        return path

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> WriterProfile:
        """Parses a saved profile; ProfileError (naming `where`) for anything else."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("A", "b", "meta") if k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
            raise ProfileError(
                f"{where}: not a writer profile (truncated or not one: {e})"
            ) from None
        if set(arrays) != {"A", "b", "meta"}:
            raise ProfileError(f"{where}: not a writer profile (no map inside)")
        try:
            meta = json.loads(str(arrays["meta"]))
        except ValueError:
            raise ProfileError(f"{where}: not a writer profile (unreadable metadata)") from None
        if not isinstance(meta, dict) or meta.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"{where}: not a writer profile (format is not {PROFILE_FORMAT})")
        if meta.get("version") == 1:
            raise ProfileError(
                f"{where}: profile version 1 maps a feature layer this hccr no longer adapts; "
                f"adapt again with `hccr adapt`"
            )
        if meta.get("version") != PROFILE_VERSION:
            raise ProfileError(f"{where}: profile version {meta.get('version')} is not supported")
        A, b = arrays["A"], arrays["b"]
        if A.ndim != 2 or A.shape[0] != A.shape[1] or b.shape != (A.shape[0],):
            raise ProfileError(f"{where}: map shapes {A.shape} and {b.shape} do not fit")
        if not (np.isfinite(A).all() and np.isfinite(b).all()):
            raise ProfileError(f"{where}: the map holds non-finite numbers")
        try:
            known = {k: meta.pop(k) for k in ("weights_sha256", "charset_sha256", "num_classes",
                                              "num_samples", "mode")}  # fmt: skip
        except KeyError as e:
            raise ProfileError(f"{where}: not a writer profile (no {e} in its metadata)") from None
        meta.pop("format")
        meta.pop("version")
        return cls(A=A.astype(np.float32), b=b.astype(np.float32),
                   weights_sha256=str(known["weights_sha256"]),
                   charset_sha256=str(known["charset_sha256"]),
                   num_classes=int(known["num_classes"]), num_samples=int(known["num_samples"]),
                   mode=str(known["mode"]), meta=meta)  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> WriterProfile:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ProfileError(f"{path}: cannot read profile: {e.strerror or e}") from None
        return cls.from_bytes(data, str(path))


class Adapter:
    """Collects one writer's samples for a recogniser and fits a `WriterProfile` from them.

    The demo and `hccr adapt` both use it: `add` labelled samples (a pick is one), or
    `add_unlabelled` ones (the model's confident answers become their labels), then `fit`.

    Args:
        recognizer: the model to adapt (its features: `Recognizer.pre_features`).
        cfg: STM settings.
        prototypes: (num_classes, d) target points (None: from the classifier's weight rows).
    """

    def __init__(
        self,
        recognizer: Recognizer,
        cfg: StmConfig | None = None,
        prototypes: np.ndarray | None = None,
        prototypes_name: str = "classifier rows",
    ) -> None:
        self.recognizer = recognizer
        self.cfg = cfg or StmConfig()
        if prototypes is not None and np.shape(prototypes) != (len(recognizer.charset),
                                                               recognizer.feat_dim):  # fmt: skip
            raise ValueError(f"prototypes are {np.shape(prototypes)}, the model needs "
                             f"({len(recognizer.charset)}, {recognizer.feat_dim})")  # fmt: skip
        self.prototypes = prototypes
        self.prototypes_name = prototypes_name if prototypes is not None else "classifier rows"
        self.reset()

    def reset(self) -> None:
        """Forgets every sample."""
        self._features: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self._unsupervised = False

    @property
    def num_samples(self) -> int:
        return int(sum(len(f) for f in self._features))

    def add(self, prepared: np.ndarray | torch.Tensor, labels: list[str] | str) -> None:
        """Adds labelled model inputs and their characters: normalised ink maps ((B, S, S) or
        one (S, S)), or an online model's trajectory maps ((B, C, S, S) or one (C, S, S)).

        Raises:
            CharsetError: a label is not one of the model's characters.
        """
        x = self._batch(prepared)
        labels = [labels] if isinstance(labels, str) else list(labels)
        if len(labels) != len(x):
            raise ValueError(f"{len(x)} images but {len(labels)} labels")
        index = np.array([self.recognizer.charset.index(ch) for ch in labels], np.int64)
        self.add_features(self.recognizer.pre_features(x).numpy(), index)

    def _batch(self, prepared: np.ndarray | torch.Tensor) -> torch.Tensor:
        """One sample or a batch of them, as a batch: one online sample (C, S, S) has the
        dimensions of a batch of ink maps, so the model's channel count tells them apart."""
        x = torch.as_tensor(np.asarray(prepared))
        one = 2 if self.recognizer.channels == 1 else 3
        return x.unsqueeze(0) if x.ndim == one else x

    def add_features(
        self, features: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
    ) -> None:
        """Adds (N, d) features (`Recognizer.pre_features`) with class indices and optional
        confidences."""
        self._features.append(np.asarray(features, np.float32))
        self._labels.append(np.asarray(labels, np.int64))
        self._weights.append(
            np.ones(len(features), np.float32) if weights is None else np.asarray(weights)
        )

    def add_unlabelled(self, prepared: np.ndarray | torch.Tensor) -> int:
        """Adds unlabelled ink maps labelled by the model's top-1 answer, weighted by its
        probability; those below `cfg.min_confidence` are left out. Returns how many were kept."""
        x = self._batch(prepared)
        return self.add_unlabelled_features(self.recognizer.pre_features(x).numpy())

    def add_unlabelled_features(self, features: np.ndarray) -> int:
        """`add_unlabelled` for (N, d) features already computed; returns how many were kept."""
        feats = torch.as_tensor(np.asarray(features, np.float32))
        W, c = self.recognizer.classifier_affine()
        conf, pred = torch.softmax(torch.relu(feats) @ W.T + c, dim=1).max(1)
        keep = (conf >= self.cfg.min_confidence).numpy()
        self._unsupervised = True
        self.add_features(feats.numpy()[keep], pred.numpy()[keep], conf.numpy()[keep])
        return int(keep.sum())

    def fit(self, where: str = "adaptation data") -> WriterProfile:
        """The STM profile for the samples added so far.

        Raises:
            ValueError: fewer than `cfg.min_samples` samples (naming `where`).
        """
        n = self.num_samples
        if n < self.cfg.min_samples:
            raise ValueError(
                f"{where}: {n} usable sample(s); adaptation needs at least {self.cfg.min_samples}"
            )
        S = np.concatenate(self._features)
        labels = np.concatenate(self._labels)
        weights = np.concatenate(self._weights)
        W, _ = self.recognizer.classifier_affine()
        protos = self.prototypes
        if protos is None:  # scaled to the writer's features after the ReLU, as the rows are
            scale = float(np.linalg.norm(np.maximum(S, 0), axis=1).mean())
            protos = weight_prototypes(W.numpy(), scale)
        prior = self.cfg.prior_unsupervised if self._unsupervised else self.cfg.prior
        A, b = fit_stm(S, protos[labels], weights, prior, self.cfg.bias_prior)
        rec = self.recognizer
        return WriterProfile(
            A=A,
            b=b,
            weights_sha256=rec.weights_sha256,
            charset_sha256=charset_sha256(rec.charset),
            num_classes=len(rec.charset),
            num_samples=n,
            mode="unsupervised" if self._unsupervised else "supervised",
            meta={
                "model": rec.name,
                "prototypes": self.prototypes_name,
                "prior": prior,
                "bias_prior": self.cfg.bias_prior,
            },
        )
