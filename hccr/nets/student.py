"""Students: LightweightNet and the cheap-convolution transformations of the teacher.

- `student_lw`, `student_lw_050`: LightweightNet, built from the teacher by architecture
  distillation (Xu, Yang, Zhang & Liu 2019, "LightweightNet: Toward fast and lightweight
  convolutional neural networks via architecture distillation", Pattern Recognition 88:272-284,
  doi:10.1016/j.patcog.2018.10.029; see also Li et al. 2018, "Building efficient CNN
  architecture for offline handwritten Chinese character recognition", IJDAR 21,
  arXiv:1804.01259, for a compact FC head on HCCR): the teacher's stage layout with
  each 3x3 conv after the first replaced by a compact depthwise-separable block (the choice an
  accuracy-sensitive rule makes; see `hccr.compress.structure.choose_blocks`), narrower stages,
  a low-dimensional FC feature layer before the classifier (the 3,755-way classifier dominates
  the parameters), BatchNorm folded into the preceding conv at export, no dropout at inference.
- `student_lw_fast`: LightweightNet reshaped for CPU throughput (the shipped default student):
  a single conv at 64x64, then 1-2-2 compact blocks with the width in the low-resolution stages.
- `student_lw_group`, `student_lw_dw`, `student_lw_shift`: the teacher itself (same widths,
  depths and head) with every 3x3 conv except the first (1 input channel) replaced by a group
  conv + channel shuffle, a depthwise-separable conv or a shift + 1x1 conv: a transformation of
  the teacher, not a redesign. Each equals `teacher_cnn` with an explicit `blocks=` list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hccr.charset import GB2312_LEVEL1_SIZE
from hccr.nets.cnn import HccrNet
from hccr.nets.registry import register_model
from hccr.nets.teacher import TEACHER_CHANNELS, TEACHER_DEPTHS, TEACHER_FEAT_DIM

STUDENT_CHANNELS = (32, 96, 192, 256)  # a thin full-resolution stage keeps CPU latency low
STUDENT_FEAT_DIM = 128
# Full-resolution feature maps are memory-bound on a CPU: student_lw_fast keeps one conv there
# and puts its width in the later stages (measured: ~2.3x student_lw's ONNX throughput).
FAST_CHANNELS = (16, 64, 160, 256)
FAST_DEPTHS = (1, 2, 2, 2)


def _first_conv_then(kind: str, depths: Sequence[int]) -> list[str]:
    """The first block stays a plain conv (1 input channel: nothing to make cheaper)."""
    return ["conv"] + [kind] * (sum(depths) - 1)


def _register_student(
    name: str,
    doc: str,
    *,
    kind: str,
    channels: Sequence[int],
    feat_dim: int,
    dropout: float,
    depths: Sequence[int] = TEACHER_DEPTHS,
) -> Callable[..., HccrNet]:
    """Registers builder `name`: an HccrNet whose blocks after the first are `kind` by default.

    Every student takes the teacher's kwargs (so `create_model(name, **model.kwargs)` rebuilds
    it); only the defaults of `channels`, `depths`, `feat_dim`, `dropout` and the block type
    differ.
    """
    default_channels, default_feat_dim, default_dropout = channels, feat_dim, dropout
    default_depths = depths

    def builder(
        num_classes: int = GB2312_LEVEL1_SIZE,
        channels: Sequence[int] = default_channels,
        depths: Sequence[int] = default_depths,
        blocks: str | Sequence[str] | None = None,
        feat_dim: int = default_feat_dim,
        pool_size: int = 2,
        dropout: float = default_dropout,
        groups: int = 4,
        ranks: dict[str, int] | None = None,
        stem: str = "pool",
        in_chans: int = 1,
    ) -> HccrNet:
        blocks = _first_conv_then(kind, depths) if blocks is None else blocks
        return HccrNet(
            num_classes,
            channels,
            depths,
            blocks,
            feat_dim,
            pool_size,
            dropout,
            groups,
            ranks,
            stem,
            in_chans,
        )

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    return register_model(builder)


student_lw = _register_student(
    "student_lw",
    "LightweightNet student: compact depthwise-separable blocks and a 128-d feature layer.",
    kind="dw",
    channels=STUDENT_CHANNELS,
    feat_dim=STUDENT_FEAT_DIM,
    dropout=0.1,
)
student_lw_050 = _register_student(
    "student_lw_050",
    "LightweightNet at width x0.5 (timm's `_050` convention); the feature layer stays 128-d.",
    kind="dw",
    channels=tuple(c // 2 for c in STUDENT_CHANNELS),
    feat_dim=STUDENT_FEAT_DIM,
    dropout=0.1,
)
student_lw_fast = _register_student(
    "student_lw_fast",
    "LightweightNet for CPU throughput: one conv at full resolution, 1-2-2 compact blocks after.",
    kind="dw",
    channels=FAST_CHANNELS,
    feat_dim=STUDENT_FEAT_DIM,
    dropout=0.1,
    depths=FAST_DEPTHS,
)
student_lw_group = _register_student(
    "student_lw_group",
    "The teacher with its 3x3 convs as 4-group convs + channel shuffle (ShuffleNet).",
    kind="group",
    channels=TEACHER_CHANNELS,
    feat_dim=TEACHER_FEAT_DIM,
    dropout=0.3,
)
student_lw_dw = _register_student(
    "student_lw_dw",
    "The teacher with its 3x3 convs as depthwise-separable convs (MobileNets).",
    kind="dw",
    channels=TEACHER_CHANNELS,
    feat_dim=TEACHER_FEAT_DIM,
    dropout=0.3,
)
student_lw_shift = _register_student(
    "student_lw_shift",
    "The teacher with its 3x3 convs as shift + 1x1 convs (Wu et al. 2018).",
    kind="shift",
    channels=TEACHER_CHANNELS,
    feat_dim=TEACHER_FEAT_DIM,
    dropout=0.3,
)
