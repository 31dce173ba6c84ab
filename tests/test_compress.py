"""Compression: BN folding, low-rank decomposition, filter pruning and structure choice."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from hccr.compress import (
    choose_blocks,
    decompose_lowrank,
    fold_bn,
    has_batchnorm,
    prunable_layers,
    prune_filters,
    prune_to_budget,
)
from hccr.compress.lowrank import rank_for_energy
from hccr.compress.stem import to_strided_stem
from hccr.nets import create_model, list_models
from hccr.profiling import count_flops, count_macs

SMALL = {"channels": (8, 16, 24, 32), "feat_dim": 16}


# Tiny nets on a shared 2-core machine: every test runs on one intra-op thread (conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine terms (defaults would make folding tests unable to fail),
    and O(1) logits (the default classifier init gives logits too small to compare)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, 1.0 / m.in_features**0.5, generator=g)
    return model.eval()


def small(name: str = "teacher_cnn", **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return randomize(create_model(name, num_classes=10, **{**SMALL, **kwargs}))


def rebuild(model: nn.Module) -> nn.Module:
    """Registry rebuild from JSON kwargs + strict load, as a bundle does."""
    new = create_model(model.arch, **json.loads(json.dumps(model.kwargs))).eval()
    new.load_state_dict(model.state_dict())
    return new


SIZE = 32  # small inputs keep the suite fast; the nets are size-agnostic
X = torch.rand(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list_models())
def test_fold_bn_preserves_logits(name: str) -> None:
    model = small(name)
    folded = fold_bn(copy.deepcopy(model))
    assert not has_batchnorm(folded)
    assert model(X).abs().max() > 0.1  # the comparison below is not vacuous
    torch.testing.assert_close(folded(X), model(X), rtol=1e-4, atol=1e-5)


def test_fold_bn_handles_low_rank_layers() -> None:
    model = randomize(decompose_lowrank(small(), energy=0.8))
    assert model.kwargs["ranks"]
    torch.testing.assert_close(fold_bn(copy.deepcopy(model))(X), model(X), rtol=1e-4, atol=1e-5)


def _full_ranks(model: nn.Module) -> dict[str, int]:
    kw = model.kwargs
    widths = [1] + kw["channels"]
    ranks = {
        f"blocks.{i}": min(3 * widths[i], 3 * widths[i + 1])
        for i, kind in enumerate(kw["blocks"])
        if kind == "conv"
    }
    return {**ranks, "feat": kw["feat_dim"], "classifier": min(kw["feat_dim"], kw["num_classes"])}


@pytest.mark.parametrize("name", ["teacher_cnn", "student_lw", "student_lw_shift"])
def test_lowrank_at_full_rank_preserves_logits(name: str) -> None:
    model = small(name)
    ranks = _full_ranks(model)
    decomposed = decompose_lowrank(model, ranks=ranks).eval()
    assert decomposed.arch == model.arch and decomposed.kwargs["ranks"] == ranks
    torch.testing.assert_close(decomposed(X), model(X), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(rebuild(decomposed)(X), decomposed(X))


def test_lowrank_truncation_changes_output_and_saves_macs() -> None:
    model = small()
    decomposed = decompose_lowrank(model, energy=0.6, input_size=SIZE).eval()
    assert count_macs(decomposed, SIZE) < count_macs(model, SIZE)
    assert not torch.allclose(decomposed(X), model(X), atol=1e-3)


def test_lowrank_flops_budget_is_met() -> None:
    model = small()
    budget = 0.5 * count_flops(model, SIZE)["flops"]
    decomposed = decompose_lowrank(model, flops_budget=budget, input_size=SIZE)
    assert count_flops(decomposed, SIZE)["flops"] <= budget
    assert count_flops(decomposed, SIZE)["flops"] > 0.3 * budget  # not needlessly small
    rebuild(decomposed)


def test_rank_for_energy() -> None:
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.7) == 2
    assert rank_for_energy(s, 1.0) == 3


def _silence_filters(model: nn.Module, share: float) -> int:
    """Makes the first `share` of every prunable layer's filters exactly zero and unused
    downstream, so removing them must leave the logits unchanged."""
    kinds = model.kwargs["blocks"]
    n_silenced = 0
    with torch.no_grad():
        for i in prunable_layers(model):
            block = model.blocks[i]
            k = int(share * block.bn.num_features)
            block.bn.weight[:k] = 0.0
            block.bn.bias[:k] = 0.0
            if i + 1 < len(kinds) and kinds[i + 1] == "dw":  # BN(0) != 0 inside the dw branch
                model.blocks[i + 1].conv.weight[:, :k] = 0.0
            n_silenced += k
    return n_silenced


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("teacher_cnn", {}),
        ("student_lw", {}),
        ("teacher_cnn", {"ranks": {"blocks.3": 20, "blocks.9": 30}}),
        ("student_lw_fast", {"stem": "stride2"}),
    ],
)
def test_pruning_silent_filters_preserves_logits_and_rebuilds(name: str, kwargs: dict) -> None:
    model = small(name, **kwargs)
    total = sum(model.kwargs["channels"][i] for i in prunable_layers(model))
    n = _silence_filters(model, 0.25)
    pruned, new_kwargs = prune_filters(model, n / total, importance="bn", min_channels=1)
    pruned.eval()
    assert sum(new_kwargs["channels"]) == sum(model.kwargs["channels"]) - n
    assert new_kwargs == pruned.kwargs and pruned.arch == model.arch
    torch.testing.assert_close(pruned(X), model(X), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rebuild(pruned)(X), pruned(X))
    assert count_macs(pruned, SIZE) < count_macs(model, SIZE)


@pytest.mark.parametrize("importance", ["l1", "bn", "taylor"])
def test_prune_filters_importances_respect_min_channels(importance: str) -> None:
    model = small("student_lw")
    data = [(X, torch.tensor([0, 1, 2, 3]))]
    pruned, kwargs = prune_filters(model, 0.5, importance=importance, min_channels=6, data=data)
    assert min(kwargs["channels"]) >= 6
    assert sum(kwargs["channels"]) < sum(model.kwargs["channels"])
    assert pruned(X).shape == (4, 10)


def test_pruned_widths_are_multiples_of_channel_multiple() -> None:
    model = small("student_lw_fast", channels=(16, 32, 48, 64))
    widths = model.kwargs["channels"]
    pruned, kwargs = prune_filters(model, 0.3, channel_multiple=8)
    assert kwargs["channels"] != widths
    assert all(c == w or c % 8 == 0 for c, w in zip(kwargs["channels"], widths, strict=True))
    assert sum(kwargs["channels"]) > (1 - 0.3) * sum(widths)  # filters were given back
    budget = 0.6 * count_flops(model, SIZE)["flops"]
    pruned, kwargs, _ = prune_to_budget(
        model, flops_target=budget, step_fraction=0.05, channel_multiple=8, input_size=SIZE
    )
    assert count_flops(pruned, SIZE)["flops"] <= budget
    assert all(c % 8 == 0 for c in kwargs["channels"])
    with pytest.raises(ValueError, match="channel_multiple"):
        prune_filters(model, 0.3, channel_multiple=0)


def test_group_and_shift_inputs_are_not_pruned() -> None:
    model = small("student_lw_shift")
    assert prunable_layers(model) == [9]  # only the last block feeds no shift
    assert prunable_layers(small("student_lw_group")) == []


def test_prune_to_budget_calls_finetune_and_meets_budget() -> None:
    model = small()
    target = 0.4 * count_flops(model, SIZE)["flops"]
    calls = []

    def finetune(m: nn.Module) -> nn.Module:
        calls.append(list(m.kwargs["channels"]))
        return m

    pruned, kwargs, history = prune_to_budget(
        model, flops_target=target, step_fraction=0.2, finetune=finetune, input_size=SIZE
    )
    assert count_flops(pruned, SIZE)["flops"] <= target
    assert history[-1]["flops"] > 0.8 * target  # the last step is shrunk to land near the budget
    assert len(calls) == len(history) >= 2
    assert [h["flops"] for h in history] == sorted((h["flops"] for h in history), reverse=True)
    assert kwargs == pruned.kwargs
    rebuild(pruned)


def test_prune_to_unreachable_budget_raises() -> None:
    with pytest.raises(ValueError, match="budget"):
        prune_to_budget(small("student_lw_group"), params_target=10)


COSTS = {"dw": 0.01, "group": 0.03, "shift": 0.2}
SHALLOW = {**SMALL, "depths": (1, 1, 1, 1)}


def _fake_score(model: nn.Module) -> float:
    """Accuracy falls by a fixed amount per cheap block type (stands in for a KD fine-tune)."""
    return 0.9 - sum(COSTS.get(kind, 0.0) for kind in model.kwargs["blocks"])


def test_choose_blocks_meets_flops_budget_with_least_accuracy_cost() -> None:
    base = create_model("teacher_cnn", num_classes=10, **SHALLOW)
    budget = 0.5 * count_flops(base)["flops"]
    choice = choose_blocks(
        "teacher_cnn",
        _fake_score,
        num_classes=10,
        base_kwargs=SHALLOW,
        flops_budget=budget,
        input_size=SIZE,
    )
    model = create_model(choice.arch, **choice.kwargs)
    assert count_flops(model, SIZE)["flops"] == choice.flops <= budget
    assert choice.kwargs["blocks"][0] == "conv"
    assert "shift" not in choice.kwargs["blocks"]  # the costly replacement is never needed
    assert len(choice.trials) == 3 * 3
    assert choice.base_score == pytest.approx(0.9)


def test_choose_blocks_unreachable_budget_raises() -> None:
    with pytest.raises(ValueError, match="budget not reachable"):
        choose_blocks(
            "teacher_cnn",
            _fake_score,
            num_classes=10,
            base_kwargs=SHALLOW,
            flops_budget=1000,
            input_size=SIZE,
        )


@pytest.mark.parametrize("name", ["teacher_cnn", "student_lw_fast"])
def test_strided_stem_is_conv_then_average_pool_and_keeps_the_rest(name: str) -> None:
    model = small(name)
    strided = to_strided_stem(model).eval()
    assert strided.kwargs["stem"] == "stride2" and strided.arch == model.arch
    # before the ReLU, the 4x4 stride-2 conv is the 3x3 conv + BN followed by 2x2 averaging
    stem, new = model.blocks[0], strided.blocks[0]
    torch.testing.assert_close(
        new.bn(new.conv(X)),
        nn.functional.avg_pool2d(stem.bn(stem.conv(X)), 2),
        rtol=1e-4,
        atol=1e-5,
    )
    old, fresh = model.state_dict(), strided.state_dict()
    assert [k for k in old if not torch.equal(old[k], fresh[k])] == ["blocks.0.conv.weight"]
    # the rest of the net sees the same resolutions: stage 0 already comes out halved
    assert [s.shape[-1] for s in strided.forward_stages(X)][:2] == [SIZE // 2, SIZE // 2]
    assert [s.shape[-1] for s in model.forward_stages(X)][:2] == [SIZE, SIZE // 2]
    assert strided(X).shape == model(X).shape
    assert count_macs(strided, SIZE) < count_macs(model, SIZE)
    torch.testing.assert_close(rebuild(strided)(X), strided(X))
    folded = fold_bn(copy.deepcopy(strided))
    torch.testing.assert_close(folded(X), strided(X), rtol=1e-4, atol=1e-5)


def test_strided_stem_rejects_what_it_cannot_convert() -> None:
    with pytest.raises(ValueError, match="already has"):
        to_strided_stem(to_strided_stem(small()))
    with pytest.raises(ValueError, match="plain"):
        to_strided_stem(small(ranks={"blocks.0": 3}))
    with pytest.raises(ValueError, match="unknown stem"):
        create_model("teacher_cnn", stem="stride4")
    # low-rank decomposition leaves the strided stem alone instead of failing on it
    decomposed = decompose_lowrank(to_strided_stem(small()), energy=0.8)
    assert decomposed.kwargs["ranks"] and "blocks.0" not in decomposed.kwargs["ranks"]
