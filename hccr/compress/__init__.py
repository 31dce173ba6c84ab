"""Compression toolbox: BN folding, low-rank decomposition, filter pruning, block-wise structure choice."""

from hccr.compress.fold_bn import fold_bn, has_batchnorm
from hccr.compress.lowrank import decompose_lowrank
from hccr.compress.prune import prunable_layers, prune_filters, prune_to_budget
from hccr.compress.structure import StructureChoice, choose_blocks, inherit_weights

__all__ = [
    "StructureChoice",
    "choose_blocks",
    "decompose_lowrank",
    "fold_bn",
    "has_batchnorm",
    "inherit_weights",
    "prunable_layers",
    "prune_filters",
    "prune_to_budget",
]
