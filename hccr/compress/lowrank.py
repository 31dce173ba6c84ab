"""Closed-form low-rank decomposition of conv and FC layers, ranks chosen by energy or FLOPs.

- A k x k conv with weight W (N, C, k, k) becomes a (k x 1) conv C -> r followed by a (1 x k)
  conv r -> N: Jaderberg, Vedaldi & Zisserman 2014, "Speeding up convolutional neural networks
  with low rank expansions" (arXiv:1405.3866), scheme 2, with the closed-form solution of Tai et
  al. 2016, "Convolutional neural networks with low-rank regularization" (arXiv:1511.06067): the
  truncated SVD of W reshaped to (C k, N k). Also the channel decomposition used for HCCR by
  Xiao et al. 2017 (arXiv:1702.07975).
- A linear layer W (out, in) becomes two linears in -> r -> out by truncated SVD (Denton et al.
  2014, arXiv:1404.0736).
At full rank the decomposed network computes the same function (up to float error); below it,
fine-tune with knowledge transfer from the undecomposed network (the trainer's job).

The result is the same registry architecture with explicit `ranks=` kwargs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hccr.nets.blocks import ConvBlock
from hccr.nets.registry import create_model, model_kwargs
from hccr.profiling import DEFAULT_IMAGE_SIZE, model_device


def _conv_matrix(w: Tensor) -> Tensor:
    """(N, C, k, k) kernel -> (C k, N k) matrix M[(c, y), (n, x)] = W[n, c, y, x]."""
    n, c, kh, kw = w.shape
    return w.permute(1, 2, 0, 3).reshape(c * kh, n * kw)


def split_conv_weight(w: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Vertical (rank, C, k, 1) and horizontal (N, rank, 1, k) kernels whose composition approximates w."""
    n, c, kh, kw = w.shape
    u, s, vh = torch.linalg.svd(
        _conv_matrix(w.double()), full_matrices=False
    )  # (Ck, R) (R,) (R, Nk)
    root = s[:rank].sqrt()
    vertical = (u[:, :rank] * root).T.reshape(rank, c, kh, 1)
    horizontal = (
        (root[:, None] * vh[:rank]).reshape(rank, n, kw).permute(1, 0, 2).reshape(n, rank, 1, kw)
    )
    return vertical.to(w.dtype).contiguous(), horizontal.to(w.dtype).contiguous()


def split_linear_weight(w: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Reduce (rank, in) and expand (out, rank) weights with expand @ reduce ~= w (out, in)."""
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)  # (out, R) (R,) (R, in)
    root = s[:rank].sqrt()
    reduce = root[:, None] * vh[:rank]
    expand = u[:, :rank] * root
    return reduce.to(w.dtype).contiguous(), expand.to(w.dtype).contiguous()


def rank_for_energy(s: Tensor, energy: float) -> int:
    """Smallest r whose leading singular values keep `energy` of sum(s**2)."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    e = (s.double() ** 2).cumsum(0)
    e = e / e[-1]
    return int(torch.searchsorted(e, torch.tensor(energy, dtype=e.dtype) - 1e-12).item()) + 1


class _Candidate:
    """One decomposable layer: its singular values and MACs as a function of rank."""

    def __init__(self, key: str, weight: Tensor, positions: int) -> None:
        self.key, self.weight = key, weight.detach()
        if weight.dim() == 4:
            n, c, kh, kw = weight.shape
            self.full_macs = n * c * kh * kw * positions
            self.macs_per_rank = (c * kh + n * kw) * positions
            self.s = torch.linalg.svdvals(_conv_matrix(self.weight.double()))
        else:
            out, inp = weight.shape
            self.full_macs = out * inp * positions
            self.macs_per_rank = (out + inp) * positions
            self.s = torch.linalg.svdvals(self.weight.double())
        self.max_rank = len(self.s)

    def macs(self, rank: int | None) -> int:
        return self.full_macs if rank is None else rank * self.macs_per_rank

    def rank_or_none(self, rank: int) -> int | None:
        """`rank`, or None (keep the layer whole) when the factors would cost more than the layer."""
        return rank if self.macs(rank) < self.full_macs else None


def _candidates(
    model: nn.Module, layers: Sequence[str] | None, input_size: int
) -> list[_Candidate]:
    """Undecomposed 3x3 conv blocks and the feat / classifier linears, with their output positions."""
    modules: dict[str, nn.Module] = {}
    for i, block in enumerate(model.blocks):
        conv = block.conv
        # a strided stem (4x4, stride 2) has no (k x 1)(1 x k) split here
        if isinstance(block, ConvBlock) and isinstance(conv, nn.Conv2d) and conv.stride == (1, 1):
            modules[f"blocks.{i}"] = conv
    if isinstance(model.feat.fc, nn.Linear):
        modules["feat"] = model.feat.fc
    if isinstance(model.classifier, nn.Linear):
        modules["classifier"] = model.classifier
    if layers is not None:
        unknown = sorted(set(layers) - set(modules))
        if unknown:
            raise ValueError(f"cannot decompose {unknown}; decomposable: {', '.join(modules)}")
        modules = {k: modules[k] for k in layers}
    positions: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, out, key=key: positions.__setitem__(key, out[0, 0].numel())
        )
        for key, m in modules.items()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, input_size, input_size, device=model_device(model)))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return [_Candidate(key, m.weight, positions[key]) for key, m in modules.items()]


def _ranks_at_energy(cands: list[_Candidate], energy: float) -> dict[str, int | None]:
    return {c.key: c.rank_or_none(rank_for_energy(c.s, energy)) for c in cands}


def decompose_lowrank(
    model: nn.Module,
    energy: float | None = None,
    flops_budget: float | None = None,
    ranks: dict[str, int] | None = None,
    layers: Sequence[str] | None = None,
    input_size: int = DEFAULT_IMAGE_SIZE,
) -> nn.Module:
    """Replaces conv / FC layers by low-rank pairs; returns a new model of the same architecture.

    Give exactly one of:
        energy: per-layer rank keeps this fraction of sum(s**2) (e.g. 0.9).
        flops_budget: FLOPs (= 2 x MACs) of the whole model at `input_size`; one energy level is
            chosen for all layers (bisection) so the model fits the budget.
        ranks: explicit {"blocks.<i>" | "feat" | "classifier": rank}; kept even if not cheaper
            (a rank at or above the full rank reproduces the layer exactly).
    With `energy` / `flops_budget`, a layer is decomposed only where that saves MACs.

    Args:
        model: an `HccrNet` built by `create_model` (needs `.arch` and `.kwargs`).
        layers: restrict to these layer keys (default: every undecomposed 3x3 conv block, feat, classifier).
        input_size: image side used to count MACs.

    Returns:
        `create_model(model.arch, **kwargs)` with kwargs["ranks"] updated, weights loaded strictly;
        read the new kwargs with `hccr.nets.model_kwargs(result)`.
    """
    if sum(a is not None for a in (energy, flops_budget, ranks)) != 1:
        raise ValueError("give exactly one of energy, flops_budget or ranks")
    cands = _candidates(model, list(ranks) if ranks is not None else layers, input_size)
    if ranks is not None:
        chosen: dict[str, int | None] = {k: int(r) for k, r in ranks.items()}
    elif energy is not None:
        chosen = _ranks_at_energy(cands, energy)
    else:
        chosen = _ranks_for_budget(model, cands, flops_budget, input_size)

    state = model.state_dict()
    kwargs = model_kwargs(model)
    new_ranks = dict(kwargs.get("ranks") or {})
    for key, rank in chosen.items():
        if rank is None:
            continue
        new_ranks[key] = rank
        prefix = _state_prefix(key)
        w = state.pop(f"{prefix}.weight")
        if w.dim() == 4:
            state[f"{prefix}.vertical.weight"], state[f"{prefix}.horizontal.weight"] = _pad_rank(
                split_conv_weight(w, min(rank, _max_rank(w))), rank
            )
        else:
            state[f"{prefix}.reduce.weight"], state[f"{prefix}.expand.weight"] = _pad_rank(
                split_linear_weight(w, min(rank, min(w.shape))), rank
            )
            if f"{prefix}.bias" in state:
                state[f"{prefix}.expand.bias"] = state.pop(f"{prefix}.bias")
    kwargs["ranks"] = new_ranks
    new = create_model(model.arch, **kwargs)
    new.load_state_dict(state)
    return new.train(model.training)


def _state_prefix(key: str) -> str:
    """Layer key -> state_dict prefix of the layer's weight."""
    return {"feat": "feat.fc", "classifier": "classifier"}.get(key, f"{key}.conv")


def _max_rank(w: Tensor) -> int:
    n, c, kh, kw = w.shape
    return min(c * kh, n * kw)


def _pad_rank(factors: tuple[Tensor, Tensor], rank: int) -> tuple[Tensor, Tensor]:
    """Zero-pads factors computed at the full rank up to a requested larger rank (exact, just wasteful)."""
    first, second = factors
    r = first.shape[0]
    if r == rank:
        return first, second
    first = torch.cat([first, first.new_zeros(rank - r, *first.shape[1:])], 0)
    second = torch.cat([second, second.new_zeros(second.shape[0], rank - r, *second.shape[2:])], 1)
    return first, second


def _ranks_for_budget(
    model: nn.Module, cands: list[_Candidate], flops_budget: float, input_size: int
) -> dict[str, int | None]:
    """The ranks at the largest energy level (one for all layers, by bisection) whose model
    fits `flops_budget`."""
    from hccr.profiling import count_macs

    base = count_macs(model, input_size)
    target = flops_budget / 2.0

    def total(ch: dict[str, int | None]) -> int:
        return base - sum(c.full_macs - c.macs(ch[c.key]) for c in cands)

    lo, hi = 0.0, 1.0  # the largest energy whose model fits the budget
    if total(_ranks_at_energy(cands, 1e-9)) > target:
        raise ValueError(f"FLOPs budget {flops_budget:.3g} is below what rank-1 layers reach")
    for _ in range(40):
        mid = (lo + hi) / 2
        if total(_ranks_at_energy(cands, max(mid, 1e-9))) <= target:
            lo = mid
        else:
            hi = mid
    return _ranks_at_energy(cands, max(lo, 1e-9))
