"""Compression recipes: a trained model made cheaper, then fine-tuned with knowledge transfer
from itself (the uncompressed model is the teacher).

- run_lowrank: low-rank decomposition (hccr.compress.decompose_lowrank), then fine-tuning with
  knowledge transfer from the undecomposed model (Xiao et al. 2017, "Building fast and compact
  convolutional neural networks for offline handwritten Chinese character recognition",
  arXiv:1702.07975).
- run_prune: iterative global filter pruning (hccr.compress.prune_to_budget) with a short
  KT fine-tune after every step, then a final KT fine-tune (Molchanov et al. 2017; Xiao 2017).
- run_stem: the full-resolution conv + max-pool replaced by a 4x4 stride-2 conv
  (hccr.compress.stem), then KT fine-tuning from the original model.
Every recipe writes a run folder that is also a bundle (see hccr.fit.fit).
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hccr.bundle import Bundle, BundleError
from hccr.config import TrainConfig
from hccr.distill.objectives import DistillConfig, build_objective
from hccr.engine import build_optimizer, cosine_lr, train_one_epoch
from hccr.fit import fit
from hccr.run_folder import CHECKPOINT_FILE, RunSpec
from hccr.train import (
    load_datasets,
    load_matching_bundle,
    model_from_checkpoint,
    prepare,
    run_record,
)

IMPORTANCES = ("l1", "bn", "taylor")


@dataclass
class LowRankConfig:
    """Low-rank decomposition (Jaderberg et al. 2014 scheme 2; Tai et al. 2016 closed form)."""

    energy: float = field(
        default=0.9, metadata={"help": "per-layer rank keeps this share of sum(s^2)"}
    )
    flops_ratio: float = field(
        default=0.0,
        metadata={"help": "instead of --energy: target FLOPs as a share of the input model's"},
    )


@dataclass
class PruneConfig:
    """Iterative global filter pruning with KT fine-tuning between steps."""

    flops_ratio: float = field(
        default=0.5, metadata={"help": "target FLOPs as a share of the input model's"}
    )
    step_fraction: float = field(
        default=0.2, metadata={"help": "share of the remaining prunable filters removed per step"}
    )
    step_epochs: int = field(
        default=1, metadata={"help": "KT fine-tuning epochs after each pruning step"}
    )
    importance: str = field(
        default="l1", metadata={"help": "filter importance", "choices": IMPORTANCES}
    )
    min_channels: int = field(default=4, metadata={"help": "no layer is cut below this width"})
    channel_multiple: int = field(
        default=8,
        metadata={
            "help": "pruned layers keep a multiple of this many filters (CPU kernels work in "
            "blocks of 8 channels; 1: any width)"
        },
    )


def _kt_finetune(
    objective: nn.Module, cfg: TrainConfig, train_set: Dataset, epochs: int, device: torch.device
) -> None:
    """A short in-memory KT fine-tune (between pruning steps): no files, no evaluation."""
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=cfg.workers,
        drop_last=len(train_set) > cfg.batch_size,
    )
    objective.to(device)
    optimizer = build_optimizer(objective.trainable_parameters(), cfg)
    total = max(1, epochs * len(loader))
    for epoch in range(epochs):
        train_one_epoch(
            objective.student,
            objective,
            optimizer,
            loader,
            device,
            lr_at=lambda step: cosine_lr(step, total, 0, cfg.lr, cfg.min_lr),
            start_step=epoch * len(loader),
            amp=cfg.amp,
            progress=cfg.progress,
            desc=f"prune fine-tune {epoch + 1}/{epochs}",
        )


@dataclass
class _Source:
    """What a compress recipe starts from: the trained MODEL (also the teacher) and its data."""

    bundle: Bundle
    device: torch.device
    train_set: Dataset
    val_set: Dataset | None
    size: int
    flops: int  # of MODEL, counted on the CPU before any move to the device


def _load_source(model_spec: str, cfg: TrainConfig) -> _Source:
    from hccr.profiling import count_flops

    device = prepare(cfg)
    train_set, val_set = load_datasets(cfg)
    bundle = load_matching_bundle(model_spec, train_set, cfg.data)
    size = train_set.image_size
    flops = count_flops(bundle.model, size)["flops"]
    return _Source(bundle, device, train_set, val_set, size, flops)


def _fixed_teacher_only(dcfg: DistillConfig) -> None:
    if dcfg.kd_mode == "mutual":
        raise ValueError(
            "compress uses the source model as a fixed teacher: --kd-mode logit|feature"
        )


def _finetune_from_source(
    src: _Source,
    student: nn.Module,
    cfg: TrainConfig,
    dcfg: DistillConfig,
    out: Path,
    *,
    method: str,
    method_cfg: Any | None,
    resume: bool,
    command: str | None,
    **more: Any,
) -> dict[str, Any]:
    """The final KT fine-tune of compressed `student` from the source model, into run folder
    `out` (a bundle whose record says how `student` was made: `method`, its config, `more`)."""
    from hccr.nets import model_kwargs
    from hccr.profiling import count_flops

    record = {
        **({method: asdict(method_cfg)} if method_cfg is not None else {}),
        "distill": asdict(dcfg),
        "source": str(src.bundle.path),
        "source_metrics": src.bundle.metrics,
        "source_flops": src.flops,
        "flops": count_flops(student.cpu(), src.size)["flops"],
        **more,
    }
    objective = build_objective(
        dcfg,
        student.to(src.device),
        src.bundle.model.to(src.device),
        image_size=src.size,
        label_smoothing=cfg.label_smoothing,
    )
    spec = RunSpec(
        arch=src.bundle.arch,
        kwargs=model_kwargs(student),
        charset=src.bundle.charset,
        norm=src.bundle.norm,
        trajectory=src.bundle.trajectory,
        record=run_record(f"compress-{method}", command, cfg, **record),
    )
    return fit(objective, cfg, out, spec, src.train_set, src.val_set, resume=resume)


def run_lowrank(
    model_spec: str,
    cfg: TrainConfig,
    lcfg: LowRankConfig,
    dcfg: DistillConfig,
    out: str | Path,
    *,
    resume: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """`hccr compress lowrank`: decompose MODEL, then KT fine-tune it from the undecomposed MODEL."""
    from hccr.compress import decompose_lowrank

    out = Path(out)
    src = _load_source(model_spec, cfg)
    if resume:
        student = model_from_checkpoint(out).to(src.device)
    elif lcfg.flops_ratio > 0:
        student = decompose_lowrank(
            copy.deepcopy(src.bundle.model),
            flops_budget=lcfg.flops_ratio * src.flops,
            input_size=src.size,
        )
    else:
        student = decompose_lowrank(
            copy.deepcopy(src.bundle.model), energy=lcfg.energy, input_size=src.size
        )
    return _finetune_from_source(
        src,
        student,
        cfg,
        dcfg,
        out,
        method="lowrank",
        method_cfg=lcfg,
        resume=resume,
        command=command,
        ranks=student.kwargs.get("ranks"),
    )


def run_prune(
    model_spec: str,
    cfg: TrainConfig,
    pcfg: PruneConfig,
    dcfg: DistillConfig,
    out: str | Path,
    *,
    resume: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """`hccr compress prune`: prune MODEL to a FLOPs budget with KT fine-tuning after each step
    (teacher: the unpruned MODEL), then a final KT fine-tune of cfg.epochs into the run folder.
    One function: the per-step fine-tune closes over this run's teacher, device and data."""
    from hccr.compress import prune_to_budget

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("compress prune runs in one process (pruning steps are not distributed)")
    _fixed_teacher_only(dcfg)
    out = Path(out)
    src = _load_source(model_spec, cfg)
    device, size = src.device, src.size
    teacher = src.bundle.model.to(device)
    history: list[dict[str, Any]] = []
    if resume:
        student = model_from_checkpoint(out).to(device)
    else:
        if (out / CHECKPOINT_FILE).is_file():
            raise BundleError(
                f"{out}: already holds a training run; pass --resume to continue it or choose "
                "another -o"
            )

        def finetune(model: nn.Module) -> nn.Module:
            if pcfg.step_epochs <= 0:
                return model
            objective = build_objective(
                dcfg,
                model.to(device),
                teacher,
                image_size=size,
                label_smoothing=cfg.label_smoothing,
            )
            _kt_finetune(objective, cfg, src.train_set, pcfg.step_epochs, device)
            return model.cpu()

        student, _, history = prune_to_budget(
            copy.deepcopy(src.bundle.model).cpu(),
            flops_target=pcfg.flops_ratio * src.flops,
            step_fraction=pcfg.step_fraction,
            finetune=finetune,
            importance=pcfg.importance,
            min_channels=pcfg.min_channels,
            channel_multiple=pcfg.channel_multiple,
            input_size=size,
        )
    return _finetune_from_source(
        src,
        student,
        cfg,
        dcfg,
        out,
        method="prune",
        method_cfg=pcfg,
        resume=resume,
        command=command,
        channels=student.kwargs.get("channels"),
        prune_history=history,
    )


def run_stem(
    model_spec: str,
    cfg: TrainConfig,
    dcfg: DistillConfig,
    out: str | Path,
    *,
    resume: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """`hccr compress stem`: give MODEL a strided stem, then KT fine-tune it from MODEL."""
    from hccr.compress.stem import to_strided_stem

    _fixed_teacher_only(dcfg)
    out = Path(out)
    src = _load_source(model_spec, cfg)
    student = (
        model_from_checkpoint(out).to(src.device) if resume else to_strided_stem(src.bundle.model)
    )
    return _finetune_from_source(
        src, student, cfg, dcfg, out, method="stem", method_cfg=None, resume=resume, command=command
    )
