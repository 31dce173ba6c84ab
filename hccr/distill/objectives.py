"""Training objectives: (images, labels) -> {"loss", named terms...}, injected into train_one_epoch.

Every objective is an nn.Module that owns the networks it trains (the student; plus hint
adapters or a mutual-learning peer) and holds any frozen teacher. train_one_epoch wraps the
whole objective in DistributedDataParallel when launched by torchrun, so every trainable part
(student, adapters, peer) is gradient-synchronised through one forward call.

Papers: Hinton et al. 2015 (logit KD), Romero et al. 2015 (FitNets hints), Zhang et al. 2018
(Deep Mutual Learning); see hccr.distill.losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hccr.distill.losses import build_adapters, hint_loss, kd_loss, mutual_kd_loss
from hccr.distill.taps import stages_and_logits
from hccr.engine import CrossEntropyObjective, Objective
from hccr.nets.registry import input_channels
from hccr.preprocess import DEFAULT_IMAGE_SIZE

KD_MODES = ("logit", "feature", "mutual")


@dataclass
class DistillConfig:
    """Knowledge transfer (Hinton et al. 2015; FitNets hints, Romero et al. 2015; DML, Zhang 2018)."""

    kd_mode: str = field(
        default="logit",
        metadata={
            "help": "logit: soft targets; feature: + FitNets hints; mutual: online DML",
            "choices": KD_MODES,
        },
    )
    temperature: float = field(
        default=4.0, metadata={"help": "softens both distributions; the KD term is scaled by T**2"}
    )
    alpha: float = field(
        default=0.5, metadata={"help": "weight of hard-label cross-entropy; (1 - alpha) goes to KD"}
    )
    hint_weight: float = field(
        default=1.0, metadata={"help": "weight of the FitNets hint loss (feature mode only)"}
    )
    hint_stages: tuple[int, ...] = field(
        default=(),
        metadata={"help": "forward_stages indices matched in feature mode; empty = every stage"},
    )
    mutual_temperature: float = field(
        default=1.0, metadata={"help": "temperature of the mutual KL terms (DML uses 1)"}
    )


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: a fixed teacher."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class LogitKdObjective(Objective):
    """Hinton et al. 2015: alpha * CE(labels) + (1 - alpha) * T^2 KL(teacher || student)."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        temperature: float = 4.0,
        alpha: float = 0.5,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher)
        # an image teacher of an online student sees the ink channel only (channel 0 of the
        # trajectory maps is drawn to look like its input)
        self.teacher_chans = input_channels(teacher)
        self.temperature = temperature
        self.alpha = alpha
        self.label_smoothing = label_smoothing

    def frozen_modules(self) -> list[nn.Module]:
        return [self.teacher]

    def _ce_and_kd(
        self, logits: Tensor, teacher_logits: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The hard-label cross-entropy and the soft-target KD term of one batch."""
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return ce, kd_loss(logits, teacher_logits, self.temperature)

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            teacher_logits = self.teacher(images[:, : self.teacher_chans])
        ce, kd = self._ce_and_kd(self.student(images), teacher_logits, labels)
        return {"loss": self.alpha * ce + (1 - self.alpha) * kd, "ce": ce, "kd": kd}


class FeatureKdObjective(LogitKdObjective):
    """Logit KD plus FitNets hints on forward_stages outputs, through 1x1-conv adapters.

    loss = alpha * CE + (1 - alpha) * KD + hint_weight * mean over matched stages of MSE.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        image_size: int,
        temperature: float = 4.0,
        alpha: float = 0.5,
        hint_weight: float = 1.0,
        stages: tuple[int, ...] = (),
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(student, teacher, temperature, alpha, label_smoothing)
        self.hint_weight = hint_weight
        s_shapes, t_shapes = probe_stage_shapes(student, teacher, image_size)
        n = len(t_shapes)
        build_adapters(s_shapes, t_shapes)  # raises on a stage-count mismatch
        self.stages = tuple(stages) if stages else tuple(range(n))
        bad = [i for i in self.stages if not -n <= i < n]
        if bad:
            raise ValueError(f"hint stage {bad[0]} out of range; the models have {n} stages")
        self.adapters = build_adapters(
            [s_shapes[i] for i in self.stages], [t_shapes[i] for i in self.stages]
        )

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            t_stages, teacher_logits = stages_and_logits(
                self.teacher, images[:, : self.teacher_chans]
            )
        s_stages, logits = stages_and_logits(self.student, images)
        ce, kd = self._ce_and_kd(logits, teacher_logits, labels)
        hints = []
        for adapter, i in zip(self.adapters, self.stages, strict=True):
            target = t_stages[i]
            hints.append(hint_loss(adapter(s_stages[i], target.shape[-2:]), target))
        hint = torch.stack(hints).mean()
        loss = self.alpha * ce + (1 - self.alpha) * kd + self.hint_weight * hint
        return {"loss": loss, "ce": ce, "kd": kd, "hint": hint}


class MutualObjective(Objective):
    """Deep Mutual Learning (Zhang et al. 2018): two networks trained together from scratch.

    Each network minimises CE(labels) + KL(p_other || p_self) with the other's prediction held
    fixed. The two losses are summed into one backward: their parameters are disjoint, so this
    is the paper's simultaneous variant of its alternating update, at half the forward passes.
    """

    def __init__(
        self,
        student: nn.Module,
        peer: nn.Module,
        temperature: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.student = student
        self.peer = peer
        self.temperature = temperature
        self.label_smoothing = label_smoothing

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        logits = self.student(images)
        peer_logits = self.peer(images)
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        peer_ce = F.cross_entropy(peer_logits, labels, label_smoothing=self.label_smoothing)
        kd = mutual_kd_loss(logits, peer_logits, self.temperature)
        peer_kd = mutual_kd_loss(peer_logits, logits, self.temperature)
        loss = ce + kd + peer_ce + peer_kd
        return {"loss": loss, "ce": ce, "kd": kd, "peer_ce": peer_ce, "peer_kd": peer_kd}


@torch.no_grad()
def probe_stage_shapes(
    student: nn.Module, teacher: nn.Module, image_size: int
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """forward_stages shapes of both nets on a dummy (2, 1, S, S) batch, without touching BN stats."""
    shapes = []
    for model in (student, teacher):
        was_training = model.training
        model.eval()
        p = next(model.parameters())
        x = torch.zeros(
            2, input_channels(model), image_size, image_size, device=p.device, dtype=p.dtype
        )
        shapes.append([tuple(s.shape) for s in model.forward_stages(x)])
        model.train(was_training)
    return shapes[0], shapes[1]


def build_objective(
    cfg: DistillConfig | None,
    student: nn.Module,
    teacher: nn.Module | None = None,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    label_smoothing: float = 0.0,
) -> Objective:
    """The objective for a config: None -> plain CE; kd_mode logit / feature / mutual.

    In mutual mode `teacher` is the peer, trained from its current weights (fresh for DML).
    """
    if cfg is None:
        return CrossEntropyObjective(student, label_smoothing)
    if cfg.kd_mode not in KD_MODES:
        raise ValueError(f"unknown kd mode {cfg.kd_mode!r}; known: {', '.join(KD_MODES)}")
    if teacher is None:
        raise ValueError(f"kd mode {cfg.kd_mode!r} needs a teacher (or peer) network")
    if cfg.kd_mode == "logit":
        return LogitKdObjective(student, teacher, cfg.temperature, cfg.alpha, label_smoothing)
    if cfg.kd_mode == "feature":
        return FeatureKdObjective(
            student,
            teacher,
            image_size,
            cfg.temperature,
            cfg.alpha,
            cfg.hint_weight,
            cfg.hint_stages,
            label_smoothing,
        )
    return MutualObjective(student, teacher, cfg.mutual_temperature, label_smoothing)
