"""Fold BatchNorm into the preceding conv / linear layer for inference.

One of LightweightNet's "non-tensor layer" improvements (Xu et al. 2019,
doi:10.1016/j.patcog.2018.10.029):
in eval mode BN is the affine map y = gamma * (x - mean) / sqrt(var + eps) + beta, so it merges
into the layer before it: W' = W * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps).
"""

from __future__ import annotations

import torch
from torch import nn

from hccr.nets.blocks import LowRankConv2d, LowRankLinear

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _last_linear_op(module: nn.Module) -> nn.Conv2d | nn.Linear | None:
    """The layer whose output feeds the next module: itself, or the last factor of a low-rank layer."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return module
    if isinstance(module, LowRankConv2d):
        return module.horizontal
    if isinstance(module, LowRankLinear):
        return module.expand
    return None


@torch.no_grad()
def _fold_into(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_bn needs BatchNorm running statistics (track_running_stats=True)")
    scale = torch.ones_like(bn.running_var) if bn.weight is None else bn.weight.clone()
    scale = scale / torch.sqrt(bn.running_var + bn.eps)  # (out_channels,)
    shift = torch.zeros_like(scale) if bn.bias is None else bn.bias.clone()
    bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    # weight (out, ...) scaled per output channel
    layer.weight.mul_(scale.reshape(-1, *([1] * (layer.weight.dim() - 1))))
    new_bias = (bias - bn.running_mean) * scale + shift
    layer.bias = nn.Parameter(new_bias)


def fold_bn(model: nn.Module) -> nn.Module:
    """Folds every BatchNorm that directly follows a conv / linear inside an `nn.Sequential`.

    The model is changed in place (pass a deepcopy to keep the original) and put in eval mode;
    folded BatchNorms become `nn.Identity`. The result is for inference and export: its
    state_dict no longer matches the registry architecture.
    """
    model.eval()
    for parent in list(model.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for prev_name, name in zip(names, names[1:], strict=False):
            bn = parent._modules[name]
            layer = _last_linear_op(parent._modules[prev_name])
            if isinstance(bn, _BN) and layer is not None:
                if layer.weight.shape[0] != bn.num_features:
                    raise ValueError(
                        f"BatchNorm {name!r} has {bn.num_features} features, layer {prev_name!r} {layer.weight.shape[0]}"
                    )
                _fold_into(layer, bn)
                parent._modules[name] = nn.Identity()
    return model


def has_batchnorm(model: nn.Module) -> bool:
    """True if any BatchNorm layer is left in `model`."""
    return any(isinstance(m, _BN) for m in model.modules())
