"""Knowledge-transfer losses, objectives and the distill / compress commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_lmdb import FAST, TINY_STUDENT, TINY_TEACHER, make_tiny_lmdb

from hccr.bundle import load_bundle
from hccr.cli import main
from hccr.distill.losses import HintAdapter, build_adapters, hint_loss, kd_loss, mutual_kd_loss
from hccr.distill.objectives import (
    DistillConfig,
    FeatureKdObjective,
    LogitKdObjective,
    MutualObjective,
    build_objective,
)
from hccr.distill.taps import stages_and_logits
from hccr.nets import create_model

STUDENT_KWARGS = {"channels": [4, 8, 8, 8], "depths": [1, 1, 1, 1], "feat_dim": 16, "dropout": 0.0}
TEACHER_KWARGS = {
    "channels": [8, 8, 16, 16],
    "depths": [1, 1, 1, 1],
    "feat_dim": 32,
    "dropout": 0.0,
}

# Golden values of Hinton KD, T^2 * mean_batch KL(softmax(t/T) || softmax(s/T)), computed once
# by hand with plain-Python math (exp / log sums), independently of torch; never regenerated.
GOLDEN_STUDENT = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
GOLDEN_TEACHER = [[3.0, 2.0, 1.0], [0.0, 0.0, 2.0]]
GOLDEN_KD = {1.0: 0.821116089053262, 2.0: 0.9185262513247394, 4.0: 0.9369020476086111}


@pytest.mark.parametrize("temperature", sorted(GOLDEN_KD))
def test_kd_loss_golden_values(temperature: float) -> None:
    value = kd_loss(torch.tensor(GOLDEN_STUDENT), torch.tensor(GOLDEN_TEACHER), temperature)
    assert value.item() == pytest.approx(GOLDEN_KD[temperature], rel=1e-6)


def test_kd_loss_zero_for_same_logits_and_gradient_scale() -> None:
    logits = torch.randn(4, 7)
    assert kd_loss(logits, logits, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    # T^2 scaling: at large T the gradient magnitude stays O(1) instead of vanishing like 1/T^2
    s = torch.randn(4, 7, requires_grad=True)
    t = torch.randn(4, 7)
    grads = []
    for temperature in (4.0, 16.0):
        (g,) = torch.autograd.grad(kd_loss(s, t, temperature), s)
        grads.append(g.norm().item())
    assert 0.5 < grads[1] / grads[0] < 2.0


def test_mutual_loss_does_not_push_on_peer() -> None:
    a = torch.randn(3, 5, requires_grad=True)
    b = torch.randn(3, 5, requires_grad=True)
    mutual_kd_loss(a, b).backward()
    assert a.grad is not None and b.grad is None


def test_hint_loss_and_adapter_shapes() -> None:
    f = torch.randn(2, 8, 4, 4)
    assert hint_loss(f, f).item() == 0.0
    with pytest.raises(ValueError, match="hint shapes differ"):
        hint_loss(f, torch.randn(2, 8, 2, 2))
    adapter = HintAdapter(3, 8)
    assert adapter(torch.randn(2, 3, 8, 8), (4, 4)).shape == (2, 8, 4, 4)
    assert adapter(torch.randn(2, 3, 2, 2), (4, 4)).shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match="stages"):
        build_adapters([(2, 3, 8, 8)], [(2, 8, 4, 4), (2, 8, 2, 2)])


def _nets(num_classes: int = 5) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    student = create_model("student_lw", num_classes=num_classes, **STUDENT_KWARGS)
    teacher = create_model("teacher_cnn", num_classes=num_classes, **TEACHER_KWARGS)
    return student, teacher


def test_feature_kd_adapters_match_teacher_stages() -> None:
    student, teacher = _nets()
    objective = FeatureKdObjective(student, teacher, image_size=32)
    x = torch.rand(2, 1, 32, 32)
    s_stages, s_logits = stages_and_logits(student, x)
    t_stages = teacher.forward_stages(x)
    assert len(objective.adapters) == len(t_stages) == 4
    for adapter, s, t in zip(objective.adapters, s_stages, t_stages, strict=True):
        assert s.shape[1] != t.shape[1] or s.shape[1] == 8  # the adapter really maps channels
        assert adapter(s, t.shape[-2:]).shape == t.shape
    losses = objective(x, torch.tensor([0, 1]))
    assert set(losses) == {"loss", "ce", "kd", "hint"}
    losses["loss"].backward()
    assert all(p.grad is not None for p in objective.adapters.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_tap_matches_forward_stages() -> None:
    student, _ = _nets()
    student.eval()
    x = torch.rand(2, 1, 32, 32)
    stages, logits = stages_and_logits(student, x)
    for a, b in zip(stages, student.forward_stages(x), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(logits, student(x))


def _sgd_step(objective: torch.nn.Module) -> None:
    optimizer = torch.optim.SGD(objective.trainable_parameters(), lr=0.1)
    objective.train()
    losses = objective(torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 2, 3]))
    optimizer.zero_grad()
    losses["loss"].backward()
    optimizer.step()


def _snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _changed(model: torch.nn.Module, before: list[torch.Tensor]) -> bool:
    return any(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_mutual_step_updates_both_nets() -> None:
    student, peer = _nets()
    objective = MutualObjective(student, peer)
    before_s, before_p = _snapshot(student), _snapshot(peer)
    _sgd_step(objective)
    assert _changed(student, before_s) and _changed(peer, before_p)


def test_logit_kd_step_updates_student_only() -> None:
    student, teacher = _nets()
    objective = LogitKdObjective(student, teacher)
    before_s, before_t = _snapshot(student), _snapshot(teacher)
    bn_before = (
        teacher.blocks[0].bn.running_mean.clone() if hasattr(teacher.blocks[0], "bn") else None
    )
    _sgd_step(objective)
    assert _changed(student, before_s) and not _changed(teacher, before_t)
    assert not teacher.training  # a fixed teacher stays in eval mode (BN stats frozen)
    if bn_before is not None:
        assert torch.equal(teacher.blocks[0].bn.running_mean, bn_before)


def test_build_objective_rejects_unknown_mode() -> None:
    student, teacher = _nets()
    with pytest.raises(ValueError, match="unknown kd mode"):
        build_objective(DistillConfig(kd_mode="nope"), student, teacher)


# ---------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def tiny_dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("distill-data")
    return make_tiny_lmdb(root / "train.lmdb", seed=0), make_tiny_lmdb(root / "val.lmdb", seed=1)


@pytest.fixture(scope="module")
def teacher_run(tiny_dbs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, val = tiny_dbs
    out = tmp_path_factory.mktemp("teacher") / "run"
    args = ["train", "--data", str(train), "--val", str(val), *TINY_TEACHER, *FAST]
    assert main([*args, "--epochs", "2", "-o", str(out)]) == 0
    return out


def _distill_args(teacher_run: Path, dbs: tuple[Path, Path], out: Path, *more: str) -> list[str]:
    """`hccr distill` of the tiny student from `teacher_run` for one epoch."""
    train, val = dbs
    return [
        "distill",
        "--teacher",
        str(teacher_run),
        "--data",
        str(train),
        "--val",
        str(val),
        *TINY_STUDENT,
        *FAST,
        "--epochs",
        "1",
        *more,
        "-o",
        str(out),
    ]


@pytest.mark.parametrize("mode", ["logit", "feature", "mutual"])
def test_distill_command_writes_bundle(
    mode: str, tiny_dbs: tuple[Path, Path], teacher_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"student-{mode}"
    assert main(_distill_args(teacher_run, tiny_dbs, out, "--kd-mode", mode)) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "distill" and config["distill"]["kd_mode"] == mode
    assert "--kd-mode " + mode in config["command"]
    bundle = load_bundle(out)
    assert bundle.arch == "student_lw"
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "train_kd" in row
    if mode == "feature":
        assert "train_hint" in row
    if mode == "mutual":
        assert "peer_top1" in row and load_bundle(out / "peer").arch == "teacher_cnn"


def test_distill_teacher_with_other_charset_is_one_line_error(
    teacher_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train = make_tiny_lmdb(tmp_path / "t6.lmdb", num_classes=6, per_class=3)
    assert main(_distill_args(teacher_run, (train, train), tmp_path / "s")) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "charset" in err and "6 classes" in err


@pytest.mark.parametrize("method", ["lowrank", "prune", "stem"])
def test_compress_command_writes_smaller_bundle(
    method: str, tiny_dbs: tuple[Path, Path], teacher_run: Path, tmp_path: Path
) -> None:
    from hccr.profiling import count_flops

    train, val = tiny_dbs
    out = tmp_path / method
    extra = {
        "lowrank": ["--energy", "0.8"],
        "prune": ["--flops-ratio", "0.6", "--channel-multiple", "4"],
        "stem": [],
    }[method]
    args = [
        "compress",
        method,
        str(teacher_run),
        "--data",
        str(train),
        "--val",
        str(val),
        *FAST,
        "--epochs",
        "1",
        *extra,
        "-o",
        str(out),
    ]
    assert main(args) == 0
    source, result = load_bundle(teacher_run), load_bundle(out)
    assert result.arch == source.arch == "teacher_cnn"
    # the recorded command is one a shell can run again: no quoted verb, no hidden --arch
    command = json.loads((out / "config.json").read_text())["command"]
    assert command.startswith(f"hccr compress {method} {teacher_run} ") and "--arch" not in command
    assert count_flops(result.model, 32)["flops"] < count_flops(source.model, 32)["flops"]
    if method == "lowrank":
        assert result.kwargs["ranks"]
    elif method == "stem":
        assert result.kwargs["stem"] == "stride2" and source.kwargs.get("stem", "pool") == "pool"
        assert json.loads((out / "config.json").read_text())["kind"] == "compress-stem"
    else:
        assert result.kwargs["channels"] != source.kwargs["channels"]
        assert all(c % 4 == 0 for c in result.kwargs["channels"])
        assert json.loads((out / "config.json").read_text())["prune_history"]


def test_kd_loss_is_float32_and_non_negative_for_bf16_logits() -> None:
    # under CUDA bf16 autocast the logits arrive as bf16; KL must still be computed in float32
    torch.manual_seed(0)
    s = (torch.randn(16, 50) * 0.01).bfloat16()
    t = (s.float() + torch.randn(16, 50) * 0.01).bfloat16()
    value = kd_loss(s, t, 4.0)
    assert value.dtype == torch.float32 and value.item() >= 0.0
