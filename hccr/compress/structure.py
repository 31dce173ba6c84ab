"""Budgeted block-wise structure choice: which blocks to make cheap.

The accuracy-sensitive distillation rule of LightweightNet (Xu et al. 2019, Pattern Recognition
88, doi:10.1016/j.patcog.2018.10.029) and the
budgeted block-wise search of "Compact CNN structure learning by knowledge distillation"
(Ahmed et al. 2021, arXiv:2104.09191): replace one block at a time by each cheap candidate
(group conv + shuffle, depthwise-separable, shift), measure the accuracy cost of that single
replacement with a caller-supplied score (typically validation top-1 after a short KD
fine-tune from the teacher), then accept replacements in increasing order of accuracy cost per
saved FLOP (or parameter) until the whole network fits the budget. Because a block's cost
depends only on its own widths, savings add up exactly and the budget check needs no rebuild.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hccr.charset import GB2312_LEVEL1_SIZE
from hccr.nets.registry import create_model
from hccr.preprocess import DEFAULT_IMAGE_SIZE
from hccr.profiling import count_macs, count_params

CHEAP_BLOCKS = ("dw", "group", "shift")


@dataclass
class StructureChoice:
    """The chosen structure: rebuild with `create_model(arch, **kwargs)`."""

    arch: str
    kwargs: dict[str, Any]
    macs: int
    params: int
    base_score: float
    trials: list[dict[str, Any]] = field(default_factory=list)  # one per (block, candidate)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # in acceptance order

    @property
    def flops(self) -> int:
        return 2 * self.macs


def inherit_weights(dst: nn.Module, src: nn.Module) -> int:
    """Copies every tensor of `src` whose name and shape match one of `dst`; returns how many.

    A warm start for a candidate that differs from `src` in a few blocks (not a checkpoint
    load: mismatched tensors are expected and keep their fresh initialisation).
    """
    target = dst.state_dict()
    copied = 0
    for key, value in src.state_dict().items():
        if key in target and target[key].shape == value.shape:
            target[key].copy_(value)
            copied += 1
    return copied


def _with_block(kwargs: dict[str, Any], i: int, kind: str) -> dict[str, Any]:
    kw = copy.deepcopy(kwargs)
    kw["blocks"][i] = kind
    kw["ranks"] = {k: r for k, r in (kw.get("ranks") or {}).items() if k != f"blocks.{i}"}
    return kw


def choose_blocks(
    arch: str,
    score: Callable[[nn.Module], float],
    num_classes: int = GB2312_LEVEL1_SIZE,
    flops_budget: float | None = None,
    params_budget: float | None = None,
    max_drop: float | None = None,
    candidates: Sequence[str] = CHEAP_BLOCKS,
    base_kwargs: dict[str, Any] | None = None,
    fixed: Sequence[int] = (0,),
    init_from: nn.Module | None = None,
    input_size: int = DEFAULT_IMAGE_SIZE,
) -> StructureChoice:
    """Greedy, accuracy-sensitive choice of cheap blocks under a FLOPs or parameter budget.

    Args:
        arch: registry name of the network to transform (e.g. "teacher_cnn").
        score: `score(model) -> float`, higher is better (e.g. validation top-1 after a short
            KD fine-tune); called once for the base network and once per (block, candidate).
        num_classes: classifier size of the candidates.
        flops_budget: FLOPs (= 2 x MACs) the chosen network must fit; or
        params_budget: parameter count it must fit. With neither, every replacement whose own
            cost is at most `max_drop` is accepted.
        max_drop: never accept a replacement that alone costs more than this much score.
        candidates: cheap block types to try ("dw", "group", "shift").
        base_kwargs: kwargs of the starting network (default: the registry defaults).
        fixed: blocks never replaced (default: the first, which sees 1 input channel).
        init_from: a trained network of the base structure whose matching tensors warm-start
            every candidate (`inherit_weights`).
        input_size: image side used to count MACs.

    Returns:
        A `StructureChoice`; raises ValueError if the budget cannot be met.
    """
    if flops_budget is not None and params_budget is not None:
        raise ValueError("give at most one of flops_budget or params_budget")
    unknown = sorted(set(candidates) - set(CHEAP_BLOCKS))
    if unknown:
        raise ValueError(f"unknown candidate blocks {unknown}; known: {', '.join(CHEAP_BLOCKS)}")

    def build(kw: dict[str, Any]) -> nn.Module:
        m = create_model(arch, **kw)
        if init_from is not None:
            inherit_weights(m, init_from)
        return m

    base = create_model(arch, num_classes=num_classes, **(base_kwargs or {}))
    kwargs = copy.deepcopy(base.kwargs)
    if init_from is not None:
        inherit_weights(base, init_from)
    base_macs, base_params = count_macs(base, input_size), count_params(base)
    options = []  # (block, kind, kwargs, macs_saved, params_saved); scored after the feasibility check
    for i, kind in enumerate(kwargs["blocks"]):
        if i in fixed or kind != "conv":
            continue
        for cand in candidates:
            kw = _with_block(kwargs, i, cand)
            m = create_model(arch, **kw)
            options.append(
                (i, cand, kw, base_macs - count_macs(m, input_size), base_params - count_params(m))
            )
    if flops_budget is not None or params_budget is not None:
        _check_reachable(options, base_macs, base_params, flops_budget, params_budget)
    base_score = float(score(base))
    trials = []
    for i, cand, kw, macs_saved, params_saved in options:
        trials.append(
            {
                "block": i,
                "kind": cand,
                "cost": base_score - float(score(build(kw))),
                "macs_saved": macs_saved,
                "params_saved": params_saved,
            }
        )

    chosen_kwargs, macs, params, accepted = _accept_greedily(
        trials, kwargs, base_macs, base_params, flops_budget, params_budget, max_drop
    )
    return StructureChoice(arch, chosen_kwargs, macs, params, base_score, trials, accepted)


def _check_reachable(
    options: list[tuple[int, str, dict[str, Any], int, int]],
    base_macs: int,
    base_params: int,
    flops_budget: float | None,
    params_budget: float | None,
) -> None:
    """Raises ValueError when even the cheapest candidate in every block misses the budget
    (checked before any candidate is scored: scoring is the expensive part)."""
    col, base_cost = (3, base_macs) if params_budget is None else (4, base_params)
    best: dict[int, int] = {}
    for o in options:
        best[o[0]] = max(best.get(o[0], 0), o[col])
    floor = base_cost - sum(best.values())
    limit = flops_budget / 2.0 if params_budget is None else params_budget
    if floor > limit:
        what = "FLOPs" if params_budget is None else "params"
        scale = 2 if params_budget is None else 1
        raise ValueError(
            f"budget not reachable: best {what} {scale * floor:.4g} > {scale * limit:.4g}"
        )


def _accept_greedily(
    trials: list[dict[str, Any]],
    kwargs: dict[str, Any],
    base_macs: int,
    base_params: int,
    flops_budget: float | None,
    params_budget: float | None,
    max_drop: float | None,
) -> tuple[dict[str, Any], int, int, list[dict[str, Any]]]:
    """Accepts scored replacements cheapest-per-unit-saved first until the budget is met:
    (kwargs, MACs, params, accepted trials); raises ValueError if it never is."""
    saved_key = "params_saved" if params_budget is not None else "macs_saved"
    target = None
    if flops_budget is not None:
        target = flops_budget / 2.0
    elif params_budget is not None:
        target = params_budget
    current = base_params if params_budget is not None else base_macs

    def rate(t: dict[str, Any]) -> float:  # accuracy cost per unit saved; gains sort first
        return t["cost"] / max(t[saved_key], 1)

    accepted, macs, params = [], base_macs, base_params
    chosen_kwargs = copy.deepcopy(kwargs)
    chosen: dict[int, dict[str, Any]] = {}  # block -> accepted trial
    for t in sorted(trials, key=rate):
        if target is not None and current <= target:
            break
        prev = chosen.get(t["block"])
        if t[saved_key] <= (prev[saved_key] if prev else 0):
            continue  # a block is only ever swapped for a cheaper kind
        if max_drop is not None and t["cost"] > max_drop:
            continue
        chosen_kwargs = _with_block(chosen_kwargs, t["block"], t["kind"])
        macs -= t["macs_saved"] - (prev["macs_saved"] if prev else 0)
        params -= t["params_saved"] - (prev["params_saved"] if prev else 0)
        current -= t[saved_key] - (prev[saved_key] if prev else 0)
        chosen[t["block"]] = t
        accepted.append(t)
    if target is not None and current > target:
        what, scale = ("FLOPs", 2) if params_budget is None else ("params", 1)
        raise ValueError(
            f"budget not reached: {what} {scale * current:.4g} > {scale * target:.4g} "
            "with every replacement within max_drop"
        )
    return chosen_kwargs, macs, params, accepted
