"""Training loop, run folders, resume, DDP, evaluation and their one-line errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_lmdb import FAST, TINY_STUDENT, TINY_TEACHER, make_tiny_lmdb
from torch.utils.data import DataLoader

import hccr.device
from hccr.bundle import load_bundle
from hccr.cli import main
from hccr.config import TrainConfig
from hccr.dataset import LmdbDataset
from hccr.engine import CrossEntropyObjective, build_optimizer, cosine_lr, train_one_epoch
from hccr.evaluate import evaluate
from hccr.nets import create_model
from hccr.run_folder import read_metrics

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train-data")
    return make_tiny_lmdb(root / "train.lmdb", seed=0), make_tiny_lmdb(root / "val.lmdb", seed=1)


def _train_args(
    dbs: tuple[Path, Path], out: Path, *more: str, model: list[str] = TINY_STUDENT
) -> list[str]:
    train, val = dbs
    return [
        "train",
        "--data",
        str(train),
        "--val",
        str(val),
        *model,
        *FAST,
        "-o",
        str(out),
        *more,
    ]


def test_few_steps_lower_the_loss(dbs: tuple[Path, Path]) -> None:
    torch.manual_seed(0)
    dataset = LmdbDataset(dbs[0])
    loader = DataLoader(dataset, batch_size=20, shuffle=True)
    model = create_model(
        "student_lw",
        num_classes=5,
        channels=[4, 8, 8, 8],
        depths=[1, 1, 1, 1],
        feat_dim=16,
        dropout=0.0,
    )
    objective = CrossEntropyObjective(model)
    cfg = TrainConfig(lr=0.05, weight_decay=0.0)
    optimizer = build_optimizer(objective.trainable_parameters(), cfg)
    first = train_one_epoch(model, objective, optimizer, loader, torch.device("cpu"))
    for _ in range(6):
        last = train_one_epoch(model, objective, optimizer, loader, torch.device("cpu"))
    assert set(first) == {"loss", "ce"}
    assert last["loss"] < 0.8 * first["loss"]


@pytest.mark.parametrize(
    ("amp", "flags", "expected"),
    [
        (True, "fpu avx512f amx_tile amx_bf16", True),  # AMX: bf16 units, autocast pays
        (True, "fpu avx2 avx512f avx512_bf16", True),  # AVX512-BF16: bf16 arithmetic too
        (True, "fpu avx2 avx512f avx512_vnni", False),  # no bf16 arithmetic: float32
        (False, "fpu avx512f amx_tile amx_bf16", False),  # --no-amp
    ],
)
def test_cpu_training_steps_run_bf16_only_where_the_cpu_has_bf16_arithmetic(
    dbs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    amp: bool,
    flags: str,
    expected: bool,
) -> None:
    monkeypatch.setattr(hccr.device, "_cpu_flags", lambda: frozenset(flags.split()))
    model = create_model(
        "student_lw", num_classes=5, channels=[4, 8, 8, 8], depths=[1, 1, 1, 1], feat_dim=16
    )
    seen: list[tuple[bool, torch.dtype]] = []
    model.register_forward_hook(
        lambda _m, _i, logits: seen.append((torch.is_autocast_enabled("cpu"), logits.dtype))
    )
    objective = CrossEntropyObjective(model)
    optimizer = build_optimizer(objective.trainable_parameters(), TrainConfig(lr=0.01))
    loader = DataLoader(LmdbDataset(dbs[0]), batch_size=20)
    losses = train_one_epoch(model, objective, optimizer, loader, torch.device("cpu"), amp=amp)
    assert math.isfinite(losses["loss"])
    dtype = torch.bfloat16 if expected else torch.float32
    assert seen and all(s == (expected, dtype) for s in seen)


def test_cosine_schedule() -> None:
    assert cosine_lr(0, 100, 10, 0.1, 0.0) == pytest.approx(0.01)
    assert cosine_lr(9, 100, 10, 0.1, 0.0) == pytest.approx(0.1)
    assert cosine_lr(55, 100, 10, 0.1, 0.0) == pytest.approx(0.05)
    assert cosine_lr(100, 100, 10, 0.1, 0.001) == pytest.approx(0.001)


def test_train_writes_run_folder_that_is_a_bundle(
    dbs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(_train_args(dbs, out, "--epochs", "2")) == 0
    for name in (
        "config.json",
        "checkpoint.pt",
        "best.pt",
        "metrics.jsonl",
        "bundle.json",
        "weights.pt",
        "charset.txt",
        "README.md",
    ):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["command"].startswith("hccr train --data ")
    assert config["train"]["epochs"] == 2
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    bundle = load_bundle(out)
    assert bundle.arch == "student_lw" and bundle.num_classes == 5 and bundle.image_size == 32
    best = max(rows, key=lambda r: r["top1"])
    assert bundle.metrics["top1"] == best["top1"]
    assert "hccr train --data" in (out / "README.md").read_text()
    # checkpoints load with weights_only=True
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    capsys.readouterr()
    assert (
        main(["eval", str(out), "--data", str(dbs[1]), "--json", "--workers", "0", "--no-progress"])
        == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"top1", "top5", "top10", "n"}
    assert scores["n"] == 60 and scores["top1"] == pytest.approx(best["top1"])
    assert scores["top5"] == 1.0  # 5 classes


def test_resume_continues_from_checkpoint_epoch(dbs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_train_args(dbs, out, "--epochs", "1")) == 0
    first = read_metrics(out)
    assert main(_train_args(dbs, out, "--epochs", "3", "--resume")) == 0
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0] == first[0]  # epoch 1 was not re-run
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_resume_inside_an_epoch_matches_an_uninterrupted_run(
    dbs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    whole = tmp_path / "whole"
    assert main(_train_args(dbs, whole, "--epochs", "2", "--checkpoint-minutes", "0")) == 0

    # 60 samples in batches of 16: 3 steps an epoch; stop while fetching the 5th batch, which
    # is epoch 2's second, after a checkpoint at every step
    out = tmp_path / "cut"
    read_batch = LmdbDataset.__getitems__
    calls = []

    def interrupt(self: LmdbDataset, indices: list[int]) -> list:
        if self.path == dbs[0]:
            calls.append(indices)
            if len(calls) == 5:
                raise KeyboardInterrupt
        return read_batch(self, indices)

    monkeypatch.setattr(LmdbDataset, "__getitems__", interrupt)
    assert main(_train_args(dbs, out, "--epochs", "2", "--checkpoint-minutes", "1e-9")) != 0
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (saved["epoch"], saved["samples_done"]) == (0, 16)
    err = capsys.readouterr().err  # without progress bars, a line per epoch and per checkpoint
    assert "epoch 1/2: train loss" in err and "val top-1" in err
    assert "epoch 2/2: 16 of 48 samples, checkpoint saved" in err

    calls.clear()
    assert main(_train_args(dbs, out, "--epochs", "2", "--resume")) == 0
    assert len(calls) == 2  # only epoch 2's last two batches were trained again
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    got = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    want = torch.load(whole / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_resume_of_a_checkpoint_written_before_in_chans(
    dbs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Checkpoints from before nets took `in_chans` (ink images) still resume."""
    out = tmp_path / "run"
    assert main(_train_args(dbs, out, "--epochs", "1")) == 0
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    del checkpoint["kwargs"]["in_chans"]
    torch.save(checkpoint, out / "checkpoint.pt")
    assert main(_train_args(dbs, out, "--epochs", "2", "--resume")) == 0
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]


def test_existing_run_needs_resume(
    dbs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(_train_args(dbs, out, "--epochs", "1")) == 0
    capsys.readouterr()
    assert main(_train_args(dbs, out, "--epochs", "1")) == 1
    assert "--resume" in capsys.readouterr().err


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_resume_with_other_arch_is_one_line_error(
    dbs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(_train_args(dbs, out, "--epochs", "1")) == 0
    capsys.readouterr()
    assert main(_train_args(dbs, out, "--epochs", "2", "--resume", model=TINY_TEACHER)) == 1
    err = _one_line_error(capsys)
    assert "student_lw with 5 classes" in err and "teacher_cnn" in err


def test_resume_with_other_num_classes_is_one_line_error(
    dbs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(_train_args(dbs, out, "--epochs", "1")) == 0
    capsys.readouterr()
    six = make_tiny_lmdb(tmp_path / "six.lmdb", num_classes=6, per_class=4)
    assert main(_train_args((six, six), out, "--epochs", "2", "--resume")) == 1
    err = _one_line_error(capsys)
    assert "5 classes" in err and "6 classes" in err


def test_eval_mismatched_image_size_is_one_line_error(
    dbs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(_train_args(dbs, out, "--epochs", "1")) == 0
    big = make_tiny_lmdb(tmp_path / "big.lmdb", per_class=2, size=48)
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(big), "--json", "--workers", "0"]) == 1
    err = _one_line_error(capsys)
    assert "image size" in err and "48x48" in err and "32x32" in err and str(big) in err
    linear = make_tiny_lmdb(tmp_path / "linear.lmdb", per_class=2, method="linear")
    assert main(["eval", str(out), "--data", str(linear), "--workers", "0"]) == 1
    assert "normalisation" in _one_line_error(capsys)


def test_evaluate_topk_and_label_map() -> None:
    class Fixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # class 0 first, then 1, 2, ...
            return torch.arange(12, 0, -1, dtype=torch.float).expand(x.shape[0], 12)

    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    labels = torch.tensor([0, 3, 7, 11])
    scores = evaluate(Fixed(), [(images, labels)])
    assert scores == {"top1": 0.25, "top5": 0.5, "top10": 0.75, "n": 4}
    # label 11 maps to -1 (a class the model lacks): not scored, counted under "outside"
    mapped = evaluate(Fixed(), [(images, labels)], labels_to_model=torch.tensor([0] * 11 + [-1]))
    assert mapped == {"top1": 1.0, "top5": 1.0, "top10": 1.0, "n": 3, "outside": 1}


@pytest.mark.slow
def test_ddp_two_cpu_processes_complete_an_epoch(dbs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    train, val = dbs
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "hccr.cli",
        *_train_args(dbs, out, "--epochs", "1", "--device", "cpu")[0:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    assert [r["epoch"] for r in read_metrics(out)] == [1]
    assert load_bundle(out).num_classes == 5


def _learned(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights the optimizer changes (BatchNorm running statistics move in any forward pass)."""
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def test_init_starts_from_the_bundle(dbs: tuple[Path, Path], tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert main(_train_args(dbs, first, "--epochs", "2")) == 0
    tuned = tmp_path / "tuned"
    # lr 0: the fine-tune must leave the learned weights exactly where the bundle had them
    args = ["--init", str(first), "--epochs", "1", "--lr", "0", "--seed", "5"]
    assert main(_train_args(dbs, tuned, *args, model=[])) == 0
    start, after = load_bundle(first), load_bundle(tuned)
    assert after.arch == start.arch and after.kwargs == start.kwargs
    for key, value in _learned(start.model.state_dict()).items():
        assert torch.equal(after.model.state_dict()[key], value), key
    config = json.loads((tuned / "config.json").read_text())
    assert config["train"]["init"] == str(first)
    assert "--init" in config["command"] and "--arch" not in config["command"]
    assert after.metrics["top1"] >= start.metrics["top1"] - 0.05
    # the same run from random weights ends elsewhere, so the comparison above can fail
    scratch = tmp_path / "scratch"
    assert main(_train_args(dbs, scratch, "--epochs", "1", "--lr", "0", "--seed", "5")) == 0
    fresh = load_bundle(scratch).model.state_dict()
    assert not all(torch.equal(fresh[k], v) for k, v in _learned(start.model.state_dict()).items())


def test_init_with_other_charset_or_model_flags_is_one_line_error(
    dbs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first = tmp_path / "first"
    assert main(_train_args(dbs, first, "--epochs", "1")) == 0
    capsys.readouterr()
    six = make_tiny_lmdb(tmp_path / "six.lmdb", num_classes=6, per_class=4)
    assert main(_train_args((six, six), tmp_path / "a", "--init", str(first), model=[])) == 1
    err = _one_line_error(capsys)
    assert "5 classes" in err and "6 classes" in err
    assert main(_train_args(dbs, tmp_path / "b", "--init", str(first), model=TINY_TEACHER)) == 1
    assert "--init" in _one_line_error(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_init_run_resumes_after_its_bundle_is_gone(dbs: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    first = tmp_path / "first"
    assert main(_train_args(dbs, first, "--epochs", "1")) == 0
    tuned = tmp_path / "tuned"
    assert main(_train_args(dbs, tuned, "--init", str(first), "--epochs", "1", model=[])) == 0
    shutil.rmtree(first)  # e.g. replaced by an export of this very run
    assert main(["train", "-o", str(tuned), "--resume", "--epochs", "2"]) == 0
    assert [r["epoch"] for r in read_metrics(tuned)] == [1, 2]
    assert load_bundle(tuned).arch == "student_lw"


def test_compress_rejects_init(
    dbs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train, val = dbs
    args = ["compress", "stem", str(tmp_path), "--data", str(train), "--val", str(val)]
    assert main([*args, "--init", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "drop --init" in _one_line_error(capsys)
