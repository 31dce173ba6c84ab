"""A training run: TrainConfig, and `fit`, which runs epochs of the loop into a run folder.

The loop itself is hccr.engine (train_one_epoch, the injected objective); this module adds the
run around it: optimiser, schedule, checkpoints, evaluation and the bundle. What is trained, on
what data, is chosen by the recipes (hccr.train, hccr.distill.recipes, hccr.compress.recipes).

Launched by `torchrun --nproc-per-node N`, the same code runs DistributedDataParallel (NCCL on
CUDA, gloo on CPU) with a DistributedSampler; rank 0 evaluates and writes the run folder:
  config.json    the resolved config and the exact command
  checkpoint.pt  the latest epoch (model, objective extras, optimizer, epoch), for --resume;
                 also rewritten every --checkpoint-minutes inside an epoch, so a resumed run
                 continues that epoch with exactly the samples it had left
  best.pt        the best epoch's weights
  metrics.jsonl  one JSON line per epoch; log.csv the same as CSV
  bundle.json, weights.pt, charset.txt, README.md: the bundle of the best epoch
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset

from hccr.atomic import atomic_write_text
from hccr.bundle import (
    BundleError,
    load_state_dict_strict,
    save_bundle,
)
from hccr.config import TrainConfig
from hccr.device import DistEnv, init_distributed
from hccr.engine import (
    Objective,
    ResumableSampler,
    build_optimizer,
    cosine_lr,
    train_one_epoch,
)
from hccr.evaluate import evaluate
from hccr.run_folder import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    RunSpec,
    append_metrics,
    atomic_torch_save,
    check_resumable,
    truncate_metrics,
)

# ----------------------------------------------------------------------------- the run


def _extras_state(objective: Objective) -> dict[str, torch.Tensor]:
    """Objective state outside the student and the frozen teacher: hint adapters, a DML peer."""
    return {
        k: v
        for k, v in objective.state_dict().items()
        if not k.startswith("student.") and not k.startswith("teacher.")
    }


@dataclass
class RunState:
    """One training run as `fit` drives it: what every epoch, checkpoint and log line needs."""

    objective: Objective
    cfg: TrainConfig
    out: Path
    spec: RunSpec
    env: DistEnv
    device: torch.device
    optimizer: Optimizer
    start_epoch: int = 0
    samples_done: int = 0  # per rank, of start_epoch, when resuming inside an epoch
    # the loss sums of start_epoch's trained part, so its logged mean covers all of the epoch
    resumed_sums: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=lambda: {"top1": -1.0})
    steps_per_epoch: int = 1
    warmup_steps: int = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_FILE

    def lr_at(self, step: int) -> float:
        total = self.cfg.epochs * self.steps_per_epoch
        return cosine_lr(step, total, self.warmup_steps, self.cfg.lr, self.cfg.min_lr)

    def checkpoint(self, epoch: int, best: dict[str, Any], samples_done: int = 0) -> dict[str, Any]:
        """checkpoint.pt: state after `epoch` (0-based) plus `samples_done` per rank of the next."""
        return {
            "epoch": epoch,
            "samples_done": samples_done,
            "world_size": self.env.world_size,
            "arch": self.spec.arch,
            "kwargs": self.spec.kwargs,
            "num_classes": len(self.spec.charset),
            "model": {k: v.detach().cpu() for k, v in self.objective.student.state_dict().items()},
            "extras": {k: v.detach().cpu() for k, v in _extras_state(self.objective).items()},
            "optimizer": self.optimizer.state_dict(),
            "best": best,
            "train_config": asdict(self.cfg),
        }


def fit(
    objective: Objective,
    cfg: TrainConfig,
    out: str | Path,
    spec: RunSpec,
    train_set: Dataset,
    val_set: Dataset,
    *,
    resume: bool = False,
    init_optimizer: Callable[[list[nn.Parameter], TrainConfig], Optimizer] = build_optimizer,
) -> dict[str, Any]:
    """Trains `objective.student` for cfg.epochs into run folder `out`; returns the best metrics.

    The objective's student must already be on the target device. Under torchrun every rank
    calls fit; rank 0 evaluates, writes files and the others wait.
    """
    out = Path(out)
    device = next(objective.student.parameters()).device
    env = init_distributed(device.type)
    try:
        state = _start(objective, cfg, out, spec, resume, init_optimizer, env, device)
        return _run_epochs(state, train_set, val_set)
    finally:
        if env.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _start(
    objective: Objective,
    cfg: TrainConfig,
    out: Path,
    spec: RunSpec,
    resume: bool,
    init_optimizer: Callable[[list[nn.Parameter], TrainConfig], Optimizer],
    env: DistEnv,
    device: torch.device,
) -> RunState:
    """The run's state before its first step: a fresh run, or the one checkpoint.pt holds."""
    checkpoint_path = out / CHECKPOINT_FILE
    if resume and not checkpoint_path.is_file():
        raise BundleError(f"{out}: nothing to resume ({CHECKPOINT_FILE} missing)")
    if not resume and checkpoint_path.is_file():
        raise BundleError(
            f"{out}: already holds a training run; pass --resume to continue it or choose another -o"
        )
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.channels_last:
        objective.to(memory_format=torch.channels_last)
    objective.to(device)
    optimizer = init_optimizer(objective.trainable_parameters(), cfg)
    state = RunState(objective, cfg, out, spec, env, device, optimizer)
    if resume:
        _load_checkpoint(state)
    return state


def _load_checkpoint(state: RunState) -> None:
    path, spec, objective = state.checkpoint_path, state.spec, state.objective
    checkpoint = torch.load(path, map_location=state.device, weights_only=True)
    check_resumable(checkpoint, path, spec)
    load_state_dict_strict(objective.student, checkpoint["model"], str(path), spec.arch)
    if set(_extras_state(objective)) != set(checkpoint.get("extras", {})):
        raise BundleError(
            f"{path}: checkpoint was trained with another objective (kd mode); "
            "resume with the same --kd-mode"
        )
    merged = {**objective.state_dict(), **checkpoint["extras"]}
    load_state_dict_strict(objective, merged, str(path), spec.arch)
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.start_epoch = int(checkpoint["epoch"]) + 1
    state.best = dict(checkpoint.get("best") or state.best)
    if checkpoint.get("world_size", state.env.world_size) == state.env.world_size:
        state.samples_done = int(checkpoint.get("samples_done", 0))
        if state.samples_done:
            state.resumed_sums = dict(checkpoint.get("loss_sums") or {})


def _loaders(
    state: RunState, train_set: Dataset, val_set: Dataset
) -> tuple[ResumableSampler, DataLoader, DataLoader]:
    cfg, env = state.cfg, state.env
    # the shuffle depends on (seed, epoch) only, so a resumed epoch can skip what it has seen
    sampler = ResumableSampler(
        train_set,
        num_replicas=env.world_size,
        rank=env.rank,
        shuffle=True,
        seed=cfg.seed,
        drop_last=True,
    )
    loader_kwargs = dict(
        num_workers=cfg.workers,
        pin_memory=state.device.type == "cuda",
        persistent_workers=cfg.workers > 0,
    )
    # a last batch of one sample would break BatchNorm in training mode: drop the ragged batch
    per_rank = len(train_set) // env.world_size
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        drop_last=per_rank > cfg.batch_size,
        **loader_kwargs,
    )
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size * 2, shuffle=False, **loader_kwargs)
    return sampler, train_loader, val_loader


class _PeriodicCheckpoint:
    """after_step hook: rank 0 saves checkpoint.pt every cfg.checkpoint_minutes inside an epoch."""

    def __init__(self, state: RunState) -> None:
        self.state, self.epoch = state, 0
        self.sums: dict[str, float] = {}  # the running epoch's loss sums (train_one_epoch's)
        self.interval_s = state.cfg.checkpoint_minutes * 60
        self.last_save = time.monotonic()

    def __call__(self, step: int) -> None:
        state, cfg = self.state, self.state.cfg
        if not state.env.is_main or self.interval_s <= 0:
            return
        if time.monotonic() - self.last_save < self.interval_s:
            return
        done = (step + 1 - self.epoch * state.steps_per_epoch) * cfg.batch_size
        checkpoint = state.checkpoint(self.epoch - 1, state.best, done)
        checkpoint["loss_sums"] = dict(self.sums)
        atomic_torch_save(checkpoint, state.checkpoint_path)
        self.last_save = time.monotonic()
        if not cfg.progress:  # a run without bars (in the background) still says where it is
            world = state.env.world_size
            print(
                f"epoch {self.epoch + 1}/{cfg.epochs}: {done * world:,} of "
                f"{state.steps_per_epoch * cfg.batch_size * world:,} samples, checkpoint saved",
                file=sys.stderr,
                flush=True,
            )


def _run_epochs(state: RunState, train_set: Dataset, val_set: Dataset) -> dict[str, Any]:
    cfg, env, out = state.cfg, state.env, state.out
    sampler, train_loader, val_loader = _loaders(state, train_set, val_set)
    torch.manual_seed(cfg.seed + env.rank)  # per-rank augmentation streams (DDP syncs weights)
    runner: nn.Module = state.objective
    if env.world_size > 1:
        device = state.device
        runner = nn.parallel.DistributedDataParallel(
            state.objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    state.steps_per_epoch = max(1, len(train_loader))
    state.warmup_steps = min(
        int(cfg.warmup_epochs * state.steps_per_epoch), cfg.epochs * state.steps_per_epoch // 5
    )
    if env.is_main:
        record = {**state.spec.record, "train": asdict(cfg), "world_size": env.world_size}
        atomic_write_text(
            out / CONFIG_FILE, json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        )
        truncate_metrics(out, state.start_epoch)
    save_within_epoch = _PeriodicCheckpoint(state)
    for epoch in range(state.start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        sampler.skip = state.samples_done if epoch == state.start_epoch else 0
        save_within_epoch.epoch = epoch
        save_within_epoch.sums = dict(state.resumed_sums) if epoch == state.start_epoch else {}
        started = time.perf_counter()
        train_stats = train_one_epoch(
            state.objective.student,
            runner,
            state.optimizer,
            train_loader,
            state.device,
            lr_at=state.lr_at,
            after_step=save_within_epoch,
            start_step=epoch * state.steps_per_epoch + sampler.skip // cfg.batch_size,
            amp=cfg.amp,
            channels_last=cfg.channels_last,
            progress=cfg.progress and env.is_main,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            sums=save_within_epoch.sums,
        )
        if env.is_main:
            seconds = time.perf_counter() - started
            row = _finish_epoch(state, val_loader, epoch, train_stats, seconds)
            if row["top1"] > state.best["top1"]:
                state.best = {k: row[k] for k in ("epoch", "top1", "top5", "top10", "n")}
            print(
                f"epoch {epoch + 1}/{cfg.epochs}: train loss "
                f"{row.get('train_loss', float('nan')):.4f}, val top-1 {100 * row['top1']:.2f}% "
                f"(best {100 * state.best['top1']:.2f}%), {row['time_s']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        if env.world_size > 1:
            dist.barrier()
    return state.best


def _finish_epoch(
    state: RunState,
    val_loader: DataLoader,
    epoch: int,
    train_stats: dict[str, float],
    seconds: float,
) -> dict[str, Any]:
    """Rank 0: evaluate, log, checkpoint, and refresh best.pt + the bundle on improvement."""
    cfg, objective, device = state.cfg, state.objective, state.device
    scores = evaluate(
        objective.student,
        val_loader,
        device,
        amp=cfg.amp,
        channels_last=cfg.channels_last,
        progress=cfg.progress,
    )
    lr = state.lr_at((epoch + 1) * state.steps_per_epoch - 1)
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "time_s": round(seconds, 2)}
    row.update({f"train_{k}": v for k, v in train_stats.items()})
    row.update(scores)
    peer = getattr(objective, "peer", None)
    if peer is not None:
        peer_scores = evaluate(
            peer, val_loader, device, amp=cfg.amp, channels_last=cfg.channels_last
        )
        row["peer_top1"] = peer_scores["top1"]
    improved = scores["top1"] > state.best["top1"]
    best = {k: row[k] for k in ("epoch", "top1", "top5", "top10", "n")} if improved else state.best
    checkpoint = state.checkpoint(epoch, best)
    if improved:
        _save_best(state, checkpoint["model"], scores, epoch, row.get("peer_top1"))
    row["best_top1"] = best["top1"]
    append_metrics(state.out, row)
    # last: a crash before this line re-runs the epoch on --resume (its log line is dropped)
    atomic_torch_save(checkpoint, state.checkpoint_path)
    return row


def _save_best(
    state: RunState,
    weights: dict[str, torch.Tensor],
    scores: dict[str, Any],
    epoch: int,
    peer_top1: float | None,
) -> None:
    """best.pt and the run folder's bundle (and the DML peer's, in RUN_DIR/peer)."""
    spec, out = state.spec, state.out
    best_pt = {"epoch": epoch, "arch": spec.arch, "kwargs": spec.kwargs, "model": weights}
    atomic_torch_save({**best_pt, "metrics": scores}, out / BEST_FILE)
    record = {**spec.record, "train": asdict(state.cfg)}
    metrics = {**scores, "epoch": epoch + 1}
    student = state.objective.student
    save_bundle(
        out, student, spec.arch, spec.kwargs, spec.charset, spec.norm,
        metrics=metrics, train_config=record, trajectory=spec.trajectory,
    )  # fmt: skip
    peer = getattr(state.objective, "peer", None)
    if peer is not None and spec.peer_arch:
        save_bundle(
            out / "peer", peer, spec.peer_arch, spec.peer_kwargs or {}, spec.charset, spec.norm,
            metrics={"top1": peer_top1, "epoch": epoch + 1}, train_config=record,
            trajectory=spec.trajectory,
        )  # fmt: skip
