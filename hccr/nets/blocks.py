"""Building blocks: the plain 3x3 conv and its cheap replacements, plus low-rank layers.

Every block maps (B, in_channels, H, W) -> (B, out_channels, H, W) and is an `nn.Sequential`
whose BatchNorm directly follows the conv it normalises, so `hccr.compress.fold_bn` can fold
any block generically. Cheap convolutions:
- group conv + channel shuffle: ShuffleNet, Zhang et al. 2018, arXiv:1707.01083;
- depthwise-separable conv: MobileNets, Howard et al. 2017, arXiv:1704.04861;
- shift + 1x1 conv: "Shift: A Zero FLOP, Zero Parameter Alternative to Spatial
  Convolutions", Wu et al. 2018, arXiv:1711.08141 (https://github.com/alvinwan/shiftresnet-cifar).
Low-rank layers: a k x k conv as a (k x 1, rank) conv followed by a (1 x k) conv, Jaderberg et
al. 2014 (arXiv:1405.3866) scheme 2 with the closed-form SVD solution of Tai et al. 2016
(arXiv:1511.06067); a linear layer as two thinner linears (truncated SVD).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLOCK_TYPES = ("conv", "group", "dw", "shift")


class LowRankConv2d(nn.Module):
    """A k x k conv factored as `vertical` (k x 1, in -> rank) then `horizontal` (1 x k, rank -> out)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        rank: int,
        padding: int = 0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        k, p = kernel_size, padding
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank
        self.vertical = nn.Conv2d(in_channels, rank, (k, 1), padding=(p, 0), bias=False)
        self.horizontal = nn.Conv2d(rank, out_channels, (1, k), padding=(0, p), bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.horizontal(self.vertical(x))


class LowRankLinear(nn.Module):
    """A linear layer factored as `reduce` (in -> rank, no bias) then `expand` (rank -> out)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.reduce = nn.Linear(in_features, rank, bias=False)
        self.expand = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.expand(self.reduce(x))


class ChannelShuffle(nn.Module):
    """Interleaves the channels of `groups` groups so the next group conv mixes them (ShuffleNet)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, g, C/g, H, W) -> (B, C/g, g, H, W) -> (B, C, H, W)
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)


class Shift(nn.Module):
    """Moves each of 9 channel groups one pixel in one of the 3 x 3 directions (zero padding).

    No parameters and no multiply-adds; the following 1x1 conv mixes the shifted channels
    (Wu et al. 2018). Channel c goes in direction c * 9 // channels, centre group included.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.channels, self.pad = channels, kernel_size // 2
        directions = [
            (dy, dx)
            for dy in range(-self.pad, self.pad + 1)
            for dx in range(-self.pad, self.pad + 1)
        ]
        n = len(directions)
        self.slices: list[tuple[int, int, int, int]] = []  # (c0, c1, dy, dx)
        for g, (dy, dx) in enumerate(directions):
            c0, c1 = math.ceil(g * channels / n), math.ceil((g + 1) * channels / n)
            if c1 > c0:
                self.slices.append((c0, c1, dy, dx))

    def forward(self, x: Tensor) -> Tensor:
        p = self.pad
        h, w = x.shape[-2], x.shape[-1]
        padded = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
        parts = [
            padded[:, c0:c1, p + dy : p + dy + h, p + dx : p + dx + w]
            for c0, c1, dy, dx in self.slices
        ]
        return torch.cat(parts, dim=1)


def _bn_act(channels: int) -> list[tuple[str, nn.Module]]:
    return [("bn", nn.BatchNorm2d(channels)), ("act", nn.ReLU(inplace=True))]


class ConvBlock(nn.Sequential):
    """3x3 conv -> BN -> ReLU; with `rank` the conv is a `LowRankConv2d`.

    `kernel_size=4, stride=2` (padding 1) is the strided stem: it halves an even input side.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rank: int | None = None,
        kernel_size: int = 3,
        stride: int = 1,
    ) -> None:
        if rank is None:
            conv: nn.Module = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=1, bias=False
            )
        elif (kernel_size, stride) == (3, 1):
            conv = LowRankConv2d(in_channels, out_channels, 3, rank, padding=1)
        else:
            raise ValueError("a low-rank conv block must be 3x3 with stride 1")
        super().__init__(OrderedDict([("conv", conv), *_bn_act(out_channels)]))


class GroupBlock(nn.Sequential):
    """3x3 group conv -> BN -> ReLU -> channel shuffle (ShuffleNet); groups = gcd(groups, in, out)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 4) -> None:
        g = math.gcd(math.gcd(groups, in_channels), out_channels)
        layers = [
            ("conv", nn.Conv2d(in_channels, out_channels, 3, padding=1, groups=g, bias=False)),
            *_bn_act(out_channels),
        ]
        if g > 1:
            layers.append(("shuffle", ChannelShuffle(g)))
        super().__init__(OrderedDict(layers))
        self.groups = g


class DwBlock(nn.Sequential):
    """Depthwise-separable conv: 3x3 depthwise -> BN -> ReLU -> 1x1 pointwise -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            OrderedDict(
                [
                    (
                        "dw",
                        nn.Conv2d(
                            in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False
                        ),
                    ),
                    ("dw_bn", nn.BatchNorm2d(in_channels)),
                    ("dw_act", nn.ReLU(inplace=True)),
                    ("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False)),
                    *_bn_act(out_channels),
                ]
            )
        )


class ShiftBlock(nn.Sequential):
    """Shift (zero FLOPs) -> 1x1 conv -> BN -> ReLU (Wu et al. 2018)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("shift", Shift(in_channels)),
                    ("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False)),
                    *_bn_act(out_channels),
                ]
            )
        )


def create_block(
    kind: str, in_channels: int, out_channels: int, rank: int | None = None, groups: int = 4
) -> nn.Sequential:
    """Builds one block of type `kind` (one of BLOCK_TYPES); `rank` applies to "conv" only."""
    if kind not in BLOCK_TYPES:
        raise ValueError(f"unknown block type {kind!r}; known: {', '.join(BLOCK_TYPES)}")
    if rank is not None and kind != "conv":
        raise ValueError(f"a rank applies to 'conv' blocks only, not {kind!r}")
    if kind == "conv":
        return ConvBlock(in_channels, out_channels, rank)
    if kind == "group":
        return GroupBlock(in_channels, out_channels, groups)
    if kind == "dw":
        return DwBlock(in_channels, out_channels)
    return ShiftBlock(in_channels, out_channels)
