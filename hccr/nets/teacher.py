"""teacher_cnn: the full baseline network, a 10-layer VGG-style CNN with BatchNorm.

Follows the deep plain CNNs that reach ~97% on ICDAR-2013 offline HCCR at 64x64 input:
Zhang, Bengio & Liu 2017, "Online and offline handwritten Chinese character recognition: A
comprehensive study and new benchmark" (Pattern Recognition 61, arXiv:1606.05763), ~10 conv
layers of growing width, 2x2 max-pooling between stages, one wide FC layer, and BatchNorm as in
Xiao et al. 2017 ("Building fast and compact convolutional neural networks for offline
handwritten Chinese character recognition", arXiv:1702.07975). At 3,755 classes it holds about
11 M parameters (~43 MB of float32 weights).
"""

from __future__ import annotations

from collections.abc import Sequence

from hccr.charset import GB2312_LEVEL1_SIZE
from hccr.nets.cnn import HccrNet
from hccr.nets.registry import register_model

TEACHER_CHANNELS = (64, 128, 256, 384)  # per stage; `channels=` shrinks it for quick benchmarks
TEACHER_DEPTHS = (2, 2, 3, 3)  # 10 conv layers in 4 stages: 64 -> 32 -> 16 -> 8 -> 4 pixels
TEACHER_FEAT_DIM = 1024


@register_model
def teacher_cnn(
    num_classes: int = GB2312_LEVEL1_SIZE,
    channels: Sequence[int] = TEACHER_CHANNELS,
    depths: Sequence[int] = TEACHER_DEPTHS,
    blocks: str | Sequence[str] = "conv",
    feat_dim: int = TEACHER_FEAT_DIM,
    pool_size: int = 2,
    dropout: float = 0.3,
    groups: int = 4,
    ranks: dict[str, int] | None = None,
    stem: str = "pool",
    in_chans: int = 1,
) -> HccrNet:
    """The teacher: plain 3x3 conv + BN + ReLU blocks and a 1024-d FC feature layer."""
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
