"""Global filter pruning that physically removes filters (masks give no speed-up).

Filters of all prunable layers are ranked together by one importance score, the least
important fraction is removed, and every affected tensor (the conv, its BatchNorm, the next
block's input side, the feature layer's input columns) is sliced. The result is the same
registry architecture with explicit per-block `channels=`, loaded strictly.

Importance scores:
- "l1": mean |w| of the filter, normalised per layer by the L2 norm of the layer's scores
  (Li et al. 2017, "Pruning filters for efficient ConvNets", arXiv:1608.08710; layer-wise
  normalisation as in Molchanov et al. 2017, arXiv:1611.06440);
- "bn": |gamma| of the filter's BatchNorm (Liu et al. 2017, "Learning efficient convolutional
  networks through network slimming", arXiv:1708.06519);
- "taylor": (gamma dL/dgamma + beta dL/dbeta)^2 summed over batches, the first-order Taylor
  estimate of the loss change (Molchanov et al. 2019, "Importance estimation for neural network
  pruning", arXiv:1906.10771).
The iterative schedule (prune a fraction, fine-tune with knowledge transfer, repeat; Molchanov
2017, and for HCCR Xiao et al. 2017, arXiv:1702.07975) is `prune_to_budget`, with the fine-tune
step injected by the trainer.

Not prunable: outputs of "group" blocks and inputs of "group" / "shift" blocks (their channel
grouping and shift directions are tied to channel positions), and the feature layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hccr.nets.registry import create_model, model_kwargs
from hccr.profiling import DEFAULT_IMAGE_SIZE, count_macs, count_params

IMPORTANCES = ("l1", "bn", "taylor")
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def prunable_layers(model: nn.Module) -> list[int]:
    """Indices of blocks whose output filters can be removed."""
    kinds = model.kwargs["blocks"]
    n = len(kinds)
    return [
        i
        for i in range(n)
        if kinds[i] != "group" and (i == n - 1 or kinds[i + 1] not in ("group", "shift"))
    ]


def _producer(model: nn.Module, i: int) -> nn.Conv2d:
    conv = model.blocks[i].conv
    return conv.horizontal if hasattr(conv, "horizontal") else conv


def _importance(
    model: nn.Module, layers: list[int], importance: str, data: Iterable | None
) -> dict[int, Tensor]:
    if importance not in IMPORTANCES:
        raise ValueError(f"unknown importance {importance!r}; known: {', '.join(IMPORTANCES)}")
    if importance == "l1":
        scores = {}
        for i in layers:
            w = _producer(model, i).weight.detach()
            s = w.abs().flatten(1).mean(1)  # (out_channels,)
            scores[i] = s / s.norm().clamp_min(1e-12)
        return scores
    if importance == "bn":
        return {i: model.blocks[i].bn.weight.detach().abs() for i in layers}
    bns = {i: model.blocks[i].bn for i in layers}
    scores = {i: torch.zeros_like(bn.weight) for i, bn in bns.items()}
    if data is None:  # use gradients the caller accumulated
        if any(bn.weight.grad is None for bn in bns.values()):
            raise ValueError(
                "taylor importance needs `data` batches or gradients on the BatchNorm weights"
            )
        for i, bn in bns.items():
            scores[i] = _taylor(bn)
        return scores
    was_training = model.training
    model.train()
    try:
        for images, labels in data:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            for i, bn in bns.items():
                scores[i] += _taylor(bn)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores


def _taylor(bn: nn.BatchNorm2d) -> Tensor:
    g = bn.weight * bn.weight.grad
    if bn.bias is not None and bn.bias.grad is not None:
        g = g + bn.bias * bn.bias.grad
    return g.detach() ** 2


def _slice_state(model: nn.Module, keep: dict[int, Tensor]) -> dict[str, Tensor]:
    """The model's state_dict with the filters not in `keep` removed everywhere they appear."""
    state = dict(model.state_dict())
    kinds = model.kwargs["blocks"]
    n = len(kinds)

    def take(key: str, dim: int, idx: Tensor) -> None:
        state[key] = state[key].index_select(dim, idx.to(state[key].device)).clone()

    for i, idx in keep.items():
        p = f"blocks.{i}"
        low_rank = hasattr(model.blocks[i].conv, "horizontal")
        take(f"{p}.conv.horizontal.weight" if low_rank else f"{p}.conv.weight", 0, idx)
        for k in _BN_KEYS:
            take(f"{p}.bn.{k}", 0, idx)
        if i + 1 < n:  # the next block's input side
            q = f"blocks.{i + 1}"
            if kinds[i + 1] == "dw":
                take(f"{q}.dw.weight", 0, idx)
                for k in _BN_KEYS:
                    take(f"{q}.dw_bn.{k}", 0, idx)
                take(f"{q}.conv.weight", 1, idx)
            elif hasattr(model.blocks[i + 1].conv, "vertical"):
                take(f"{q}.conv.vertical.weight", 1, idx)
            else:
                take(f"{q}.conv.weight", 1, idx)
        else:  # the feature layer reads the pooled (C, p, p) map flattened channel-major
            pp = model.kwargs["pool_size"] ** 2
            cols = (idx[:, None] * pp + torch.arange(pp)).flatten()
            key = "feat.fc.reduce.weight" if hasattr(model.feat.fc, "reduce") else "feat.fc.weight"
            take(key, 1, cols)
    return state


def prune_filters(
    model: nn.Module,
    fraction: float,
    importance: str = "l1",
    min_channels: int = 4,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
    channel_multiple: int = 1,
) -> tuple[nn.Module, dict[str, Any]]:
    """Removes the globally least important `fraction` of the prunable filters.

    Args:
        model: an `HccrNet` from `create_model` (needs `.arch` and `.kwargs`).
        fraction: share of all prunable filters to remove, in [0, 1).
        importance: "l1", "bn" or "taylor".
        min_channels: no layer is cut below this width.
        data: (images, labels) batches for "taylor" (else gradients already on the BN weights).
        channel_multiple: every pruned layer keeps a multiple of this many filters (the most
            important of those the global ranking removed are given back). CPU kernels work on
            blocks of 8 channels: odd widths can run slower than the unpruned net
            (bench/onnx_shapes.py).

    Returns:
        (pruned model, its kwargs): `create_model(model.arch, **kwargs)` with the surviving
        weights loaded strictly; kwargs["channels"] holds the new per-block widths.
    """
    scores = _importance(model, prunable_layers(model), importance, data)
    return _prune_by_scores(model, scores, fraction, min_channels, channel_multiple)


def _prune_by_scores(
    model: nn.Module,
    scores: dict[int, Tensor],
    fraction: float,
    min_channels: int,
    channel_multiple: int = 1,
) -> tuple[nn.Module, dict[str, Any]]:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if channel_multiple < 1:
        raise ValueError(f"channel_multiple must be >= 1, got {channel_multiple}")
    layers = sorted(scores)
    widths = list(model.kwargs["channels"])
    total = sum(widths[i] for i in layers)
    budget = int(round(fraction * total))
    entries = sorted((float(s), i, j) for i in layers for j, s in enumerate(scores[i].tolist()))
    removed: dict[int, set[int]] = {i: set() for i in layers}
    for _, i, j in entries:
        if budget <= 0:
            break
        if widths[i] - len(removed[i]) > min_channels:
            removed[i].add(j)
            budget -= 1
    if channel_multiple > 1:
        for i in layers:
            keep_n = widths[i] - len(removed[i])
            keep_n = min(widths[i], -(-keep_n // channel_multiple) * channel_multiple)
            back = sorted(removed[i], key=lambda j: -float(scores[i][j]))
            removed[i] -= set(back[: len(removed[i]) - (widths[i] - keep_n)])
    keep = {
        i: torch.tensor([j for j in range(widths[i]) if j not in removed[i]], dtype=torch.long)
        for i in layers
        if removed[i]
    }
    state = _slice_state(model, keep)
    kwargs = model_kwargs(model)
    kwargs["channels"] = [len(keep[i]) if i in keep else w for i, w in enumerate(widths)]
    pruned = create_model(model.arch, **kwargs)
    pruned.load_state_dict(state)
    pruned.train(model.training)
    return pruned, kwargs


def prune_to_budget(
    model: nn.Module,
    flops_target: float | None = None,
    params_target: float | None = None,
    step_fraction: float = 0.1,
    finetune: Callable[[nn.Module], nn.Module] | None = None,
    importance: str = "l1",
    min_channels: int = 4,
    input_size: int = DEFAULT_IMAGE_SIZE,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
    max_steps: int = 100,
    channel_multiple: int = 1,
) -> tuple[nn.Module, dict[str, Any], list[dict[str, Any]]]:
    """Iterative global pruning: prune `step_fraction`, call `finetune`, repeat until under budget.

    Args:
        model: the network to prune (an `HccrNet` from `create_model`).
        flops_target: FLOPs (= 2 x MACs) at `input_size` to reach; or
        params_target: parameter count to reach (exactly one of the two).
        step_fraction: share of the remaining prunable filters removed per step; the last step
            is shrunk (bisection) so the model lands just under the budget.
        finetune: called as `model = finetune(model)` after every step (e.g. a few epochs of
            KD from the unpruned teacher); None skips fine-tuning.
        importance, min_channels, channel_multiple: as in `prune_filters`.
        data: as in `prune_filters`; a list (it is iterated once per step).

    Returns:
        (model, kwargs, history) where history has one dict per step
        (step, fraction, channels, macs, flops, params).
    """
    if (flops_target is None) == (params_target is None):
        raise ValueError("give exactly one of flops_target or params_target")

    def cost(m: nn.Module) -> float:
        return 2 * count_macs(m, input_size) if flops_target is not None else count_params(m)

    target = flops_target if flops_target is not None else params_target
    history: list[dict[str, Any]] = []
    kwargs = model_kwargs(model)
    for step in range(1, max_steps + 1):
        if cost(model) <= target:
            break
        scores = _importance(model, prunable_layers(model), importance, data)
        pruned, kwargs_new, frac = _prune_step(
            model, scores, step_fraction, cost, target, min_channels, channel_multiple
        )
        model, kwargs = pruned, kwargs_new
        if finetune is not None:
            model = finetune(model)
            kwargs = model_kwargs(model)
        macs = count_macs(model, input_size)
        history.append(
            {
                "step": step,
                "fraction": frac,
                "channels": list(kwargs["channels"]),
                "macs": macs,
                "flops": 2 * macs,
                "params": count_params(model),
            }
        )
    else:
        if cost(model) > target:
            raise ValueError(f"budget {target:.4g} not reached after {max_steps} steps")
    return model, kwargs, history


def _prune_step(
    model: nn.Module,
    scores: dict[int, Tensor],
    step_fraction: float,
    cost: Callable[[nn.Module], float],
    target: float,
    min_channels: int,
    channel_multiple: int,
) -> tuple[nn.Module, dict[str, Any], float]:
    """One pruning step: (pruned model, its kwargs, the fraction used). The fraction grows when
    rounding gives the step all its filters back, and shrinks (bisection) when it overshoots
    `target`, so the last step lands just under the budget."""
    frac = step_fraction
    while True:  # rounding to channel_multiple can give a small step all its filters back
        pruned, kwargs_new = _prune_by_scores(model, scores, frac, min_channels, channel_multiple)
        if kwargs_new["channels"] != model.kwargs["channels"] or frac >= 0.9:
            break
        frac = min(0.9, 2 * frac)
    if kwargs_new["channels"] == model.kwargs["channels"]:
        raise ValueError(
            f"cannot reach the budget {target:.4g}: no prunable filter left above min_channels (group/shift blocks are not pruned) that keeps the widths multiples of channel_multiple={channel_multiple}"
        )
    if cost(pruned) < target:  # overshoot: find the smallest fraction that meets the budget
        lo, hi = 0.0, frac
        for _ in range(12):
            mid = (lo + hi) / 2
            candidate = _prune_by_scores(model, scores, mid, min_channels, channel_multiple)
            if cost(candidate[0]) <= target:
                hi, (pruned, kwargs_new) = mid, candidate
            else:
                lo = mid
        frac = hi
    return pruned, kwargs_new, frac
