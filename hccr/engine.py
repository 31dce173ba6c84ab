"""The training loop: what one epoch does, whatever is being trained.

A plain loop in the manner of torchvision's reference scripts. What varies between plain
training, knowledge distillation and mutual learning is the injected objective, called as
objective(images, labels) -> {"loss", named terms}: `CrossEntropyObjective` here, the
knowledge-transfer ones in hccr.distill (which builds on this module, never the reverse).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from hccr.config import OPTIMIZERS, TrainConfig
from hccr.device import bf16_autocast_pays
from hccr.preprocess import to_model_input


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


class LossDivergedError(ValueError):
    """The training loss became NaN or infinite."""


class Objective(nn.Module):
    """Base: `student` is the network being trained; frozen submodules stay in eval mode."""

    student: nn.Module

    def train(self, mode: bool = True) -> Objective:
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # BN statistics of a fixed teacher must not drift
        return self

    def frozen_modules(self) -> list[nn.Module]:
        return []

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class CrossEntropyObjective(Objective):
    """Plain supervised training: cross-entropy with optional label smoothing."""

    def __init__(self, student: nn.Module, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.student = student
        self.label_smoothing = label_smoothing

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        ce = F.cross_entropy(self.student(images), labels, label_smoothing=self.label_smoothing)
        return {"loss": ce, "ce": ce}


def cosine_lr(
    step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float
) -> float:
    """Linear warm-up to base_lr, then half-cosine decay to min_lr (Loshchilov & Hutter 2017)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


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
