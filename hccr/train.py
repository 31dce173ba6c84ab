"""Training: TrainConfig, the per-epoch loop and `fit`, which runs epochs into a run folder.

A plain loop in the manner of torchvision's reference scripts. What varies between plain
training, knowledge distillation and mutual learning is the injected objective
(hccr.distill.objectives), called as objective(images, labels) -> {"loss", named terms}.

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

import functools
import itertools
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from hccr.atomic import atomic_write_text
from hccr.bundle import (
    Bundle,
    BundleError,
    load_bundle,
    load_state_dict_strict,
    resolve_model,
    save_bundle,
)
from hccr.distill.objectives import Objective
from hccr.evaluate import DataMismatchError, check_data_matches, evaluate
from hccr.preprocess import to_model_input
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

OPTIMIZERS = ("sgd", "adamw")


class LossDivergedError(ValueError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Data, architecture and optimisation of one training run."""

    data: str = field(default="", metadata={"help": "training LMDB"})
    val: str = field(default="", metadata={"help": "validation LMDB (evaluated every epoch)"})
    arch: str = field(default="student_lw", metadata={"help": "registered architecture"})
    init: str = field(
        default="",
        metadata={
            "help": "start from this trained bundle or run folder (its architecture and "
            "weights) instead of random weights, to fine-tune it, e.g. on new data; its charset "
            "and preprocessing must match --data"
        },
    )
    model_kwargs: str = field(
        default="",
        metadata={"help": "JSON constructor kwargs, e.g. '{\"channels\": [16, 32, 48, 64]}'"},
    )
    epochs: int = field(default=30, metadata={"help": "total epochs (also with --resume)"})
    batch_size: int = field(default=128, metadata={"help": "per-process batch size"})
    optimizer: str = field(default="sgd", metadata={"help": "optimizer", "choices": OPTIMIZERS})
    lr: float = field(
        default=0.1, metadata={"help": "peak learning rate (for batch 128: scale with it)"}
    )
    min_lr: float = field(default=0.0, metadata={"help": "learning rate at the end of the cosine"})
    warmup_epochs: float = field(
        default=1.0,
        metadata={"help": "linear warm-up before the cosine (at most a fifth of the run)"},
    )
    momentum: float = field(default=0.9, metadata={"help": "SGD (Nesterov) momentum"})
    weight_decay: float = field(
        default=5e-4, metadata={"help": "on conv / linear weights only, not on BN or biases"}
    )
    label_smoothing: float = field(default=0.1, metadata={"help": "cross-entropy label smoothing"})
    augment: float = field(
        default=1.0, metadata={"help": "training augmentation strength (0 disables it)"}
    )
    workers: int = field(default=2, metadata={"help": "DataLoader worker processes"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    amp: bool = field(
        default=True,
        metadata={
            "help": "bf16 autocast in training steps, on CUDA and on CPUs with AMX bf16 units "
            "(bench/train_step.py); validation on a CPU stays float32"
        },
    )
    channels_last: bool = field(
        default=True,
        metadata={"help": "channels-last tensors, on CUDA and CPU (faster: bench/train_step.py)"},
    )
    device: str = field(default="", metadata={"help": "cuda, cpu or empty for cuda when available"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bars on stderr"})
    checkpoint_minutes: float = field(
        default=10.0,
        metadata={
            "help": "also save checkpoint.pt every this many minutes inside an epoch, so an "
            "interrupted run loses at most that much (0: only at the end of each epoch)"
        },
    )

    def parsed_model_kwargs(self) -> dict[str, Any]:
        if not self.model_kwargs:
            return {}
        try:
            value = json.loads(self.model_kwargs)
        except json.JSONDecodeError as e:
            raise ValueError(f"--model-kwargs is not JSON: {e}") from None
        if not isinstance(value, dict):
            raise ValueError("--model-kwargs must be a JSON object")
        return value


# ----------------------------------------------------------------------------- distributed


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistEnv:
    """Joins the torchrun process group when WORLD_SIZE > 1; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        owns = True
    return DistEnv(rank, world_size, local_rank, owns)


def resolve_device(cfg: TrainConfig) -> torch.device:
    """cfg.device, or CUDA when available; under torchrun the process's LOCAL_RANK GPU."""
    name = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}; use cuda or cpu")
    return torch.device(name)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def bf16_autocast_pays(device: torch.device) -> bool:
    """Whether bf16 autocast speeds up training steps on `device`.

    On CUDA, and on CPUs with AMX bf16 tile units (Intel Xeon 4th generation and later), where
    oneDNN runs bf16 convolutions and matmuls on them: training steps 1.8x (student_lw_fast) to
    3.2x (teacher_cnn) faster on 2 cores (bench/train_step.py). Other CPUs have no bf16 matrix
    units to gain from, so they train in float32.
    """
    return device.type == "cuda" or (device.type == "cpu" and "amx_bf16" in _cpu_flags())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- optimisation


def cosine_lr(
    step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float
) -> float:
    """Linear warm-up to base_lr, then half-cosine decay to min_lr (Loshchilov & Hutter 2017)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> Optimizer:
    """SGD (Nesterov) or AdamW; weight decay only on weights with ndim > 1 (not BN, not biases)."""
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: {', '.join(OPTIMIZERS)}")


class ResumableSampler(DistributedSampler):
    """A seeded shuffle per epoch (DistributedSampler's, also for a single process) that can
    start part-way: set `skip` to the samples this rank already trained on in the epoch."""

    skip = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return super().__len__() - self.skip


def train_one_epoch(
    model: nn.Module,
    objective: Callable[..., dict[str, torch.Tensor]],
    optimizer: Optimizer,
    loader: DataLoader,
    device: torch.device,
    *,
    lr_at: Callable[[int], float] | None = None,
    after_step: Callable[[int], None] | None = None,
    start_step: int = 0,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "train",
    sums: dict[str, float] | None = None,
) -> dict[str, float]:
    """One pass over `loader`; returns the mean of every named loss term.

    Args:
        model: the network being trained (put in train mode; the objective holds it).
        objective: (float images, labels) -> {"loss": ..., other named terms}; may be a
            DistributedDataParallel wrapper around an Objective.
        lr_at: global step -> learning rate, applied before each step (cosine schedule).
        after_step: called with the global step index after each optimizer step.
        start_step: global step index of this epoch's first batch.
        amp: bf16 autocast where it pays (`bf16_autocast_pays`; bf16 needs no loss scaling).
        sums: running sums of the loss terms and the step count ("steps") over the epoch,
            updated in place: a resumed epoch passes the ones its checkpoint saved, so that
            the mean it returns covers the whole epoch.
    """
    model.train()
    if isinstance(objective, nn.Module):
        objective.train()
    use_amp = amp and bf16_autocast_pays(device)
    totals = sums if sums is not None else {}
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for step, (images, labels) in enumerate(bar, start=start_step):
        if lr_at is not None:
            lr = lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
        x = to_model_input(images.to(device, non_blocking=True))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            losses = objective(x, labels)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise LossDivergedError(f"{desc}: loss became {loss.item()} at step {step}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach())
        totals["steps"] = totals.get("steps", 0) + 1
        if after_step is not None:
            after_step(step)
        if progress:
            bar.set_postfix(loss=f"{totals['loss'] / totals['steps']:.3f}")
    steps = max(totals.get("steps", 0), 1)
    return {name: total / steps for name, total in totals.items() if name != "steps"}


# ----------------------------------------------------------------------------- the run


def _extras_state(objective: Objective) -> dict[str, torch.Tensor]:
    """Objective state outside the student and the frozen teacher: hint adapters, a DML peer."""
    return {
        k: v
        for k, v in objective.state_dict().items()
        if not k.startswith("student.") and not k.startswith("teacher.")
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
        return _fit(
            objective, cfg, out, spec, train_set, val_set, resume, init_optimizer, env, device
        )
    finally:
        if env.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _fit(objective, cfg, out, spec, train_set, val_set, resume, init_optimizer, env, device):
    checkpoint_path = out / CHECKPOINT_FILE
    if resume and not checkpoint_path.is_file():
        raise BundleError(f"{out}: nothing to resume ({CHECKPOINT_FILE} missing)")
    if not resume and checkpoint_path.is_file():
        raise BundleError(
            f"{out}: already holds a training run; pass --resume to continue it or choose another -o"
        )
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    student = objective.student
    channels_last = cfg.channels_last
    if channels_last:
        objective.to(memory_format=torch.channels_last)
    objective.to(device)

    optimizer = init_optimizer(objective.trainable_parameters(), cfg)
    start_epoch, best, samples_done, resumed_sums = 0, {"top1": -1.0}, 0, {}
    if resume:
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
        check_resumable(checkpoint, checkpoint_path, spec)
        load_state_dict_strict(student, checkpoint["model"], str(checkpoint_path), spec.arch)
        extras = _extras_state(objective)
        if set(extras) != set(checkpoint.get("extras", {})):
            raise BundleError(
                f"{checkpoint_path}: checkpoint was trained with another objective (kd mode); "
                "resume with the same --kd-mode"
            )
        merged = {**objective.state_dict(), **checkpoint["extras"]}
        load_state_dict_strict(objective, merged, str(checkpoint_path), spec.arch)
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_epoch = int(checkpoint["epoch"]) + 1
        best = dict(checkpoint.get("best") or best)
        if checkpoint.get("world_size", env.world_size) == env.world_size:
            samples_done = int(checkpoint.get("samples_done", 0))
            # the loss sums of the epoch's trained part, so its logged mean covers all of it
            resumed_sums = dict(checkpoint.get("loss_sums") or {}) if samples_done else {}

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
        pin_memory=device.type == "cuda",
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

    torch.manual_seed(cfg.seed + env.rank)  # per-rank augmentation streams (DDP syncs weights)
    runner: nn.Module = objective
    if env.world_size > 1:
        runner = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    steps_per_epoch = max(1, len(train_loader))
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(int(cfg.warmup_epochs * steps_per_epoch), total_steps // 5)

    def lr_at(step: int) -> float:
        return cosine_lr(step, total_steps, warmup_steps, cfg.lr, cfg.min_lr)

    if env.is_main:
        record = {**spec.record, "train": asdict(cfg), "world_size": env.world_size}
        atomic_write_text(
            out / CONFIG_FILE, json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        )
        truncate_metrics(out, start_epoch)

    interval_s = cfg.checkpoint_minutes * 60
    last_save = time.monotonic()

    def save_within_epoch(step: int) -> None:
        nonlocal last_save
        if not env.is_main or interval_s <= 0 or time.monotonic() - last_save < interval_s:
            return
        done = (step + 1 - epoch * steps_per_epoch) * cfg.batch_size
        state = _checkpoint(objective, cfg, spec, optimizer, epoch - 1, best, env, done)
        state["loss_sums"] = dict(sums)
        atomic_torch_save(state, checkpoint_path)
        last_save = time.monotonic()
        if not cfg.progress:  # a run without bars (in the background) still says where it is
            print(
                f"epoch {epoch + 1}/{cfg.epochs}: {done * env.world_size:,} of "
                f"{steps_per_epoch * cfg.batch_size * env.world_size:,} samples, "
                f"checkpoint saved",
                file=sys.stderr,
                flush=True,
            )

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        sampler.skip = samples_done if epoch == start_epoch else 0
        sums = dict(resumed_sums) if epoch == start_epoch else {}
        started = time.perf_counter()
        train_stats = train_one_epoch(
            student,
            runner,
            optimizer,
            train_loader,
            device,
            lr_at=lr_at,
            after_step=save_within_epoch,
            start_step=epoch * steps_per_epoch + sampler.skip // cfg.batch_size,
            amp=cfg.amp,
            channels_last=channels_last,
            progress=cfg.progress and env.is_main,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            sums=sums,
        )
        if env.is_main:
            row = _finish_epoch(
                objective,
                cfg,
                out,
                spec,
                optimizer,
                val_loader,
                device,
                env,
                epoch,
                train_stats,
                best,
                lr_at((epoch + 1) * steps_per_epoch - 1),
                time.perf_counter() - started,
                channels_last,
            )
            if row["top1"] > best["top1"]:
                best = {k: row[k] for k in ("epoch", "top1", "top5", "top10", "n")}
            print(
                f"epoch {epoch + 1}/{cfg.epochs}: train loss {row.get('train_loss', float('nan')):.4f}, "
                f"val top-1 {100 * row['top1']:.2f}% (best {100 * best['top1']:.2f}%), "
                f"{row['time_s']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        if env.world_size > 1:
            dist.barrier()
    return best


def _checkpoint(
    objective: Objective,
    cfg: TrainConfig,
    spec: RunSpec,
    optimizer: Optimizer,
    epoch: int,
    best: dict[str, Any],
    env: DistEnv,
    samples_done: int = 0,
) -> dict[str, Any]:
    """checkpoint.pt: state after `epoch` (0-based) plus `samples_done` per rank of the next."""
    return {
        "epoch": epoch,
        "samples_done": samples_done,
        "world_size": env.world_size,
        "arch": spec.arch,
        "kwargs": spec.kwargs,
        "num_classes": len(spec.charset),
        "model": {k: v.detach().cpu() for k, v in objective.student.state_dict().items()},
        "extras": {k: v.detach().cpu() for k, v in _extras_state(objective).items()},
        "optimizer": optimizer.state_dict(),
        "best": best,
        "train_config": asdict(cfg),
    }


def _finish_epoch(
    objective,
    cfg,
    out,
    spec,
    optimizer,
    val_loader,
    device,
    env,
    epoch,
    train_stats,
    best,
    lr,
    seconds,
    channels_last,
) -> dict[str, Any]:
    """Rank 0: evaluate, log, checkpoint, and refresh best.pt + the bundle on improvement."""
    student = objective.student
    scores = evaluate(
        student, val_loader, device, amp=cfg.amp, channels_last=channels_last, progress=cfg.progress
    )
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "time_s": round(seconds, 2)}
    row.update({f"train_{k}": v for k, v in train_stats.items()})
    row.update(scores)
    peer = getattr(objective, "peer", None)
    if peer is not None:
        peer_scores = evaluate(peer, val_loader, device, amp=cfg.amp, channels_last=channels_last)
        row["peer_top1"] = peer_scores["top1"]
    improved = scores["top1"] > best["top1"]
    new_best = {k: row[k] for k in ("epoch", "top1", "top5", "top10", "n")} if improved else best
    checkpoint = _checkpoint(objective, cfg, spec, optimizer, epoch, new_best, env)
    if improved:
        atomic_torch_save(
            {
                "epoch": epoch,
                "arch": spec.arch,
                "kwargs": spec.kwargs,
                "model": checkpoint["model"],
                "metrics": scores,
            },
            out / BEST_FILE,
        )
        metrics = {**scores, "epoch": epoch + 1}
        record = {**spec.record, "train": asdict(cfg)}
        save_bundle(
            out,
            student,
            spec.arch,
            spec.kwargs,
            spec.charset,
            spec.norm,
            metrics=metrics,
            train_config=record,
        )
        if peer is not None and spec.peer_arch:
            save_bundle(
                out / "peer",
                peer,
                spec.peer_arch,
                spec.peer_kwargs or {},
                spec.charset,
                spec.norm,
                metrics={"top1": row["peer_top1"], "epoch": epoch + 1},
                train_config=record,
            )
    row["best_top1"] = new_best["top1"]
    append_metrics(out, row)
    # last: a crash before this line re-runs the epoch on --resume (its log line is dropped)
    atomic_torch_save(checkpoint, out / CHECKPOINT_FILE)
    return row


# ----------------------------------------------------------------------------- entry points


def load_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    """Training (augmented) and validation LmdbDatasets, checked to share charset and preprocessing."""
    from hccr.dataset import LmdbDataset, train_augment

    if not cfg.data or not cfg.val:
        raise ValueError("--data TRAIN.lmdb and --val VAL.lmdb are both required")
    probe = LmdbDataset(cfg.data)
    transform = train_augment(probe.image_size, cfg.augment) if cfg.augment > 0 else None
    train_set = LmdbDataset(cfg.data, transform=transform)
    val_set = LmdbDataset(cfg.val)
    if train_set.charset != val_set.charset:
        raise DataMismatchError(
            f"{cfg.val}: charset ({len(val_set.charset)} classes) differs from {cfg.data}'s "
            f"({len(train_set.charset)} classes)"
        )
    check_data_matches(cfg.val, val_set.norm, train_set.norm, str(cfg.data))
    return train_set, val_set


def load_matching_bundle(spec: str, train_set: Dataset, data_path: str) -> Bundle:
    """A trained bundle whose charset and preprocessing match the training LMDB."""
    path = resolve_model(spec)
    bundle = load_bundle(path)
    if bundle.charset != train_set.charset:
        raise DataMismatchError(
            f"{data_path}: charset ({len(train_set.charset)} classes) differs from model {path}'s "
            f"({len(bundle.charset)} classes)"
        )
    check_data_matches(data_path, train_set.norm, bundle.norm, str(path))
    return bundle


INIT_GIVES = ("arch", "model_kwargs")  # config fields an --init bundle decides


def model_from_checkpoint(out: str | Path) -> nn.Module:
    """The architecture recorded in run folder `out`'s checkpoint (fit loads its weights)."""
    from hccr.nets import create_model

    path = Path(out) / CHECKPOINT_FILE
    if not path.is_file():
        raise BundleError(f"{out}: nothing to resume ({CHECKPOINT_FILE} missing)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return create_model(checkpoint["arch"], **dict(checkpoint["kwargs"]))


def build_model(
    cfg: TrainConfig, train_set: Dataset, resume_dir: str | Path | None = None
) -> tuple[nn.Module, str, dict[str, Any]]:
    """The network to train: cfg.arch with random weights, or (--init) a trained bundle's
    architecture and weights. Returns (model, arch, record), record naming the starting point.

    Resuming an --init run (`resume_dir`) takes the architecture from the run's checkpoint: the
    bundle may have been replaced or deleted since (e.g. by exporting the run over it).
    """
    from hccr.nets import create_model

    if not cfg.init:
        n = len(train_set.charset)
        return create_model(cfg.arch, num_classes=n, **cfg.parsed_model_kwargs()), cfg.arch, {}
    if resume_dir is not None:
        model = model_from_checkpoint(resume_dir)
        return model, model.arch, {"init": cfg.init}
    if cfg.model_kwargs:
        raise ValueError("--init takes the architecture from the bundle: drop --model-kwargs")
    bundle = load_matching_bundle(cfg.init, train_set, cfg.data)
    if cfg.arch not in (TrainConfig().arch, bundle.arch):
        raise ValueError(
            f"--init {cfg.init} is a {bundle.arch}; drop --arch {cfg.arch} (the bundle gives it)"
        )
    record = {"init": str(bundle.path), "init_metrics": bundle.metrics}
    return bundle.model.train(), bundle.arch, record


def prepare(cfg: TrainConfig) -> torch.device:
    """Seeds, CPU threads and the device of this process."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    return resolve_device(cfg)


def run_train(
    cfg: TrainConfig, out: str | Path, *, resume: bool = False, command: str | None = None
) -> dict[str, Any]:
    """`hccr train`: cfg.arch from scratch (or the --init bundle) with cross-entropy; returns the
    best epoch's metrics."""
    from hccr.distill.objectives import CrossEntropyObjective
    from hccr.nets import model_kwargs

    device = prepare(cfg)
    train_set, val_set = load_datasets(cfg)
    model, arch, start = build_model(cfg, train_set, out if resume else None)
    spec = RunSpec(
        arch=arch,
        kwargs=model_kwargs(model),
        charset=train_set.charset,
        norm=train_set.norm,
        record={"kind": "train", "command": command, "data": cfg.data, "val": cfg.val, **start},
    )
    objective = CrossEntropyObjective(model.to(device), cfg.label_smoothing)
    return fit(objective, cfg, out, spec, train_set, val_set, resume=resume)
