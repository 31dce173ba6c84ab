"""HccrNet: the VGG-style stage network that the teacher and every student are instances of.

Layout: `depths[s]` blocks per stage (3x3 conv or a cheap replacement, each followed by BN and
ReLU), 2x2 max-pooling after every stage, adaptive average pooling to `pool_size` x `pool_size`
(so 48, 64 and 96 pixel inputs all work), a `feat_dim` fully connected feature layer (FC -> BN
-> ReLU), dropout (training only) and the classifier. Teacher and students share the stage
count, so hint (feature) distillation can map `forward_stages` outputs one to one.

Everything that compression rewrites is a plain kwarg recorded in `model.kwargs`:
`channels` (one width per block), `blocks` (one type per block), `ranks` (module name -> rank
for low-rank layers: "blocks.<i>", "feat" or "classifier"), `stem` ("pool": the first block is a
3x3 conv at full resolution and stage 0 ends in the max-pool; "stride2": it is a 4x4 stride-2
conv and stage 0 has no max-pool, see `hccr.compress.stem`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from hccr.nets.blocks import BLOCK_TYPES, ConvBlock, LowRankLinear, create_block

STEMS = ("pool", "stride2")


def _check_structure(
    widths: list[int],
    kinds: list[str],
    feat_dim: int,
    num_classes: int,
    ranks: dict[str, int],
    stem: str,
) -> None:
    """Raises ValueError, naming the bad argument, for a structure `HccrNet` cannot build."""
    n = len(widths)
    for kind in kinds:
        if kind not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {kind!r}; known: {', '.join(BLOCK_TYPES)}")
    known = {f"blocks.{i}" for i in range(n)} | {"feat", "classifier"}
    for key, r in ranks.items():
        if key not in known:
            raise ValueError(
                f"ranks key {key!r} is not a layer; known: blocks.0..blocks.{n - 1}, feat, classifier"
            )
        if r < 1:
            raise ValueError(f"rank of {key} must be >= 1, got {r}")
    if min(widths) < 1 or feat_dim < 1 or num_classes < 1:
        raise ValueError("widths, feat_dim and num_classes must be >= 1")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; known: {', '.join(STEMS)}")
    if stem == "stride2" and (kinds[0] != "conv" or "blocks.0" in ranks):
        raise ValueError("the stride2 stem needs a plain 'conv' first block (no rank)")


def _expand_channels(channels: Sequence[int], depths: Sequence[int]) -> list[int]:
    """Per-stage widths (one per stage) or per-block widths (one per block) -> per-block widths."""
    channels = [int(c) for c in channels]
    if len(channels) == sum(depths):
        return channels
    if len(channels) == len(depths):
        return [c for c, d in zip(channels, depths, strict=True) for _ in range(d)]
    raise ValueError(
        f"channels has {len(channels)} entries; expected {len(depths)} (one per stage) "
        f"or {sum(depths)} (one per block) for depths {list(depths)}"
    )


class HccrNet(nn.Module):
    """A stage CNN for (B, C, S, S) inputs in [0, 1], ink bright (C = `in_chans`).

    Args:
        num_classes: classifier outputs.
        channels: output width of every block (or of every stage).
        depths: blocks per stage.
        blocks: block type of every block ("conv", "group", "dw", "shift") or one type for all.
        feat_dim: width of the fully connected feature layer before the classifier.
        pool_size: side of the adaptive average pooling before the feature layer.
        dropout: dropout before the classifier (identity in eval mode and in exports).
        groups: group count of "group" blocks (reduced to a common divisor of the widths).
        ranks: low-rank layers, module name ("blocks.<i>", "feat", "classifier") -> rank.
        stem: "pool" (3x3 conv, then stage 0's 2x2 max-pool) or "stride2" (the first block is
            a 4x4 stride-2 conv in place of both; it must be a "conv" block without a rank).
        in_chans: input channels: 1 for ink images, `TrajectoryConfig.channels` for the
            direction-decomposed maps of an online model (`hccr.trajectory`).
    """

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int],
        depths: Sequence[int],
        blocks: str | Sequence[str],
        feat_dim: int,
        pool_size: int = 2,
        dropout: float = 0.0,
        groups: int = 4,
        ranks: dict[str, int] | None = None,
        stem: str = "pool",
        in_chans: int = 1,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        depths = [int(d) for d in depths]
        if not depths or min(depths) < 1:
            raise ValueError(f"depths must be positive, got {depths}")
        widths = _expand_channels(channels, depths)
        n = len(widths)
        kinds = [blocks] * n if isinstance(blocks, str) else list(blocks)
        if len(kinds) != n:
            raise ValueError(f"blocks has {len(kinds)} entries; expected {n}")
        ranks = {str(k): int(v) for k, v in (ranks or {}).items()}
        _check_structure(widths, kinds, feat_dim, num_classes, ranks, stem)

        self.kwargs: dict[str, Any] = {
            "num_classes": int(num_classes),
            "channels": widths,
            "depths": depths,
            "blocks": kinds,
            "feat_dim": int(feat_dim),
            "pool_size": int(pool_size),
            "dropout": float(dropout),
            "groups": int(groups),
            "ranks": dict(sorted(ranks.items())),
            "stem": stem,
            "in_chans": int(in_chans),
        }
        self.num_classes, self.feat_dim = int(num_classes), int(feat_dim)
        self.stage_ends = [sum(depths[: s + 1]) - 1 for s in range(len(depths))]
        # block indices followed by the 2x2 max-pool; a strided stem already halved stage 0
        self.pool_after = set(self.stage_ends[1:] if stem == "stride2" else self.stage_ends)
        in_channels = int(in_chans)
        layers = []
        for i, (width, kind) in enumerate(zip(widths, kinds, strict=True)):
            if i == 0 and stem == "stride2":
                layers.append(ConvBlock(in_channels, width, kernel_size=4, stride=2))
            else:
                rank = ranks.get(f"blocks.{i}")
                layers.append(create_block(kind, in_channels, width, rank, groups))
            in_channels = width
        self.blocks = nn.ModuleList(layers)
        self.downsample = nn.MaxPool2d(2)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        flat = in_channels * pool_size * pool_size
        fc = _linear(flat, feat_dim, ranks.get("feat"), bias=False)
        self.feat = nn.Sequential(
            OrderedDict(
                [("fc", fc), ("bn", nn.BatchNorm1d(feat_dim)), ("act", nn.ReLU(inplace=True))]
            )
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = _linear(feat_dim, num_classes, ranks.get("classifier"), bias=True)
        self._init_weights()

    @property
    def stage_channels(self) -> list[int]:
        """Output width of each stage (what hint adapters map between)."""
        return [self.kwargs["channels"][i] for i in self.stage_ends]

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """The output of every stage (after its last block, before pooling)."""
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outs.append(x)
            if i in self.pool_after:
                x = self.downsample(x)
        return outs

    def forward_pre_features(self, x: Tensor) -> Tensor:
        """(B, C, S, S) -> (B, feat_dim) the feature layer's pre-activation (FC + BN, before its
        ReLU): the space a writer profile maps (`hccr.adapt`)."""
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.pool_after:
                x = self.downsample(x)
        return self.feat.bn(self.feat.fc(self.pool(x).flatten(1)))

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, S, S) -> (B, feat_dim) feature vector (the classifier's input)."""
        return self.feat.act(self.forward_pre_features(x))

    def forward_head(self, feat: Tensor) -> Tensor:
        """(B, feat_dim) -> (B, num_classes) logits."""
        return self.classifier(self.dropout(feat))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _linear(in_features: int, out_features: int, rank: int | None, bias: bool) -> nn.Module:
    if rank is None:
        return nn.Linear(in_features, out_features, bias=bias)
    return LowRankLinear(in_features, out_features, rank, bias=bias)
