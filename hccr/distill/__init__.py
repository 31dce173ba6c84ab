"""Knowledge transfer: KD / hint / mutual losses, training objectives, and distil / compress recipes."""

from hccr.distill.losses import HintAdapter, hint_loss, kd_loss, mutual_kd_loss
from hccr.distill.objectives import (
    KD_MODES,
    CrossEntropyObjective,
    DistillConfig,
    FeatureKdObjective,
    LogitKdObjective,
    MutualObjective,
    Objective,
    build_objective,
)

__all__ = [
    "KD_MODES",
    "CrossEntropyObjective",
    "DistillConfig",
    "FeatureKdObjective",
    "HintAdapter",
    "LogitKdObjective",
    "MutualObjective",
    "Objective",
    "build_objective",
    "hint_loss",
    "kd_loss",
    "mutual_kd_loss",
]
