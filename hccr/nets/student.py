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
- `student_lw_group`, `student_lw_dw`, `student_lw_shift`: the teacher itself (same widths,
  depths and head) with every 3x3 conv except the first (1 input channel) replaced by a group
  conv + channel shuffle, a depthwise-separable conv or a shift + 1x1 conv: a transformation of
  the teacher, not a redesign. Each equals `teacher_cnn` with an explicit `blocks=` list.
"""

from __future__ import annotations

from collections.abc import Sequence

from hccr.nets.cnn import HccrNet
from hccr.nets.registry import register_model
from hccr.nets.teacher import TEACHER_CHANNELS, TEACHER_DEPTHS, TEACHER_FEAT_DIM

STUDENT_CHANNELS = (32, 96, 192, 256)  # a thin full-resolution stage keeps CPU latency low
STUDENT_FEAT_DIM = 128


def _first_conv_then(kind: str, depths: Sequence[int]) -> list[str]:
    """The first block stays a plain conv (1 input channel: nothing to make cheaper)."""
    return ["conv"] + [kind] * (sum(depths) - 1)


@register_model
def student_lw(
    num_classes: int = 3755,
    channels: Sequence[int] = STUDENT_CHANNELS,
    depths: Sequence[int] = TEACHER_DEPTHS,
    blocks: str | Sequence[str] | None = None,
    feat_dim: int = STUDENT_FEAT_DIM,
    pool_size: int = 2,
    dropout: float = 0.1,
    groups: int = 4,
    ranks: dict[str, int] | None = None,
) -> HccrNet:
    """LightweightNet student: compact depthwise-separable blocks and a 128-d feature layer."""
    blocks = _first_conv_then("dw", depths) if blocks is None else blocks
    return HccrNet(
        num_classes, channels, depths, blocks, feat_dim, pool_size, dropout, groups, ranks
    )


@register_model
def student_lw_050(
    num_classes: int = 3755,
    channels: Sequence[int] = tuple(c // 2 for c in STUDENT_CHANNELS),
    depths: Sequence[int] = TEACHER_DEPTHS,
    blocks: str | Sequence[str] | None = None,
    feat_dim: int = STUDENT_FEAT_DIM,
    pool_size: int = 2,
    dropout: float = 0.1,
    groups: int = 4,
    ranks: dict[str, int] | None = None,
) -> HccrNet:
    """LightweightNet at width x0.5 (timm's `_050` convention); the feature layer stays 128-d."""
    blocks = _first_conv_then("dw", depths) if blocks is None else blocks
    return HccrNet(
        num_classes, channels, depths, blocks, feat_dim, pool_size, dropout, groups, ranks
    )


def _cheap_teacher(
    kind: str, num_classes: int, blocks: str | Sequence[str] | None, **kwargs
) -> HccrNet:
    depths = kwargs.pop("depths")
    blocks = _first_conv_then(kind, depths) if blocks is None else blocks
    return HccrNet(num_classes=num_classes, depths=depths, blocks=blocks, **kwargs)


@register_model
def student_lw_group(
    num_classes: int = 3755,
    channels: Sequence[int] = TEACHER_CHANNELS,
    depths: Sequence[int] = TEACHER_DEPTHS,
    blocks: str | Sequence[str] | None = None,
    feat_dim: int = TEACHER_FEAT_DIM,
    pool_size: int = 2,
    dropout: float = 0.3,
    groups: int = 4,
    ranks: dict[str, int] | None = None,
) -> HccrNet:
    """The teacher with its 3x3 convs as 4-group convs + channel shuffle (ShuffleNet)."""
    return _cheap_teacher(
        "group",
        num_classes,
        blocks,
        channels=channels,
        depths=depths,
        feat_dim=feat_dim,
        pool_size=pool_size,
        dropout=dropout,
        groups=groups,
        ranks=ranks,
    )


@register_model
def student_lw_dw(
    num_classes: int = 3755,
    channels: Sequence[int] = TEACHER_CHANNELS,
    depths: Sequence[int] = TEACHER_DEPTHS,
    blocks: str | Sequence[str] | None = None,
    feat_dim: int = TEACHER_FEAT_DIM,
    pool_size: int = 2,
    dropout: float = 0.3,
    groups: int = 4,
    ranks: dict[str, int] | None = None,
) -> HccrNet:
    """The teacher with its 3x3 convs as depthwise-separable convs (MobileNets)."""
    return _cheap_teacher(
        "dw",
        num_classes,
        blocks,
        channels=channels,
        depths=depths,
        feat_dim=feat_dim,
        pool_size=pool_size,
        dropout=dropout,
        groups=groups,
        ranks=ranks,
    )


@register_model
def student_lw_shift(
    num_classes: int = 3755,
    channels: Sequence[int] = TEACHER_CHANNELS,
    depths: Sequence[int] = TEACHER_DEPTHS,
    blocks: str | Sequence[str] | None = None,
    feat_dim: int = TEACHER_FEAT_DIM,
    pool_size: int = 2,
    dropout: float = 0.3,
    groups: int = 4,
    ranks: dict[str, int] | None = None,
) -> HccrNet:
    """The teacher with its 3x3 convs as shift + 1x1 convs (Wu et al. 2018)."""
    return _cheap_teacher(
        "shift",
        num_classes,
        blocks,
        channels=channels,
        depths=depths,
        feat_dim=feat_dim,
        pool_size=pool_size,
        dropout=dropout,
        groups=groups,
        ranks=ranks,
    )
