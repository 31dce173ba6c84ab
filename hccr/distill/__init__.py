"""Knowledge transfer: KD / hint / mutual losses, the objectives that use them, and the distil
recipe. Builds on the training loop (hccr.engine), never the reverse."""

from hccr.distill.losses import HintAdapter, hint_loss, kd_loss, mutual_kd_loss
from hccr.distill.objectives import (
    KD_MODES,
    DistillConfig,
    FeatureKdObjective,
    LogitKdObjective,
    MutualObjective,
    build_objective,
)

__all__ = [
    "KD_MODES",
    "DistillConfig",
    "FeatureKdObjective",
    "HintAdapter",
    "LogitKdObjective",
    "MutualObjective",
    "build_objective",
    "hint_loss",
    "kd_loss",
    "mutual_kd_loss",
]
