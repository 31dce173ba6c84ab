"""`hccr train`'s recipe, and what every recipe shares: its data, its model, its process.

  run_train        cfg.arch from scratch (or a trained bundle with --init), cross-entropy
  load_datasets    training (augmented) and validation LMDBs, checked against each other
  build_model      random weights, an --init bundle, or a resumed run's architecture
  prepare          seeds, CPU threads, device

The run itself (epochs, checkpoints, the bundle) is hccr.fit.fit; distillation and compression
recipes (hccr.distill.recipes, hccr.compress.recipes) build on this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from hccr.bundle import Bundle, BundleError, load_bundle, resolve_model
from hccr.config import TrainConfig
from hccr.device import resolve_device, seed_everything
from hccr.engine import CrossEntropyObjective
from hccr.evaluate import DataMismatchError, check_data_matches, check_input_matches
from hccr.fit import fit
from hccr.run_folder import CHECKPOINT_FILE, RunSpec

__all__ = ["INIT_GIVES", "TrainConfig", "build_model", "load_datasets", "run_train"]


def load_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    """Training (augmented) and validation LmdbDatasets, checked to share charset and preprocessing.

    A trajectory LMDB is augmented on its points (`StrokeAugment`), an image LMDB on its pixels.
    """
    from hccr.augment import StrokeAugment, train_augment
    from hccr.dataset import LmdbDataset

    if not cfg.data or not cfg.val:
        raise ValueError("--data TRAIN.lmdb and --val VAL.lmdb are both required")
    probe = LmdbDataset(cfg.data)
    transform: Any = None
    if cfg.augment > 0:
        transform = (
            StrokeAugment(cfg.augment)
            if probe.trajectory is not None
            else train_augment(probe.image_size, cfg.augment)
        )
    train_set = LmdbDataset(cfg.data, transform=transform)
    val_set = LmdbDataset(cfg.val)
    check_input_matches(cfg.val, val_set, train_set.trajectory, str(cfg.data))
    if train_set.charset != val_set.charset:
        raise DataMismatchError(
            f"{cfg.val}: charset ({len(val_set.charset)} classes) differs from {cfg.data}'s "
            f"({len(train_set.charset)} classes)"
        )
    check_data_matches(cfg.val, val_set.norm, train_set.norm, str(cfg.data))
    return train_set, val_set


def load_matching_bundle(
    spec: str, train_set: Dataset, data_path: str, widen: bool = False
) -> Bundle:
    """A trained bundle whose charset and preprocessing match the training LMDB; `widen`:
    an image bundle may start a model on a trajectory LMDB (`expand_input_channels`)."""
    path = resolve_model(spec)
    bundle = load_bundle(path)
    check_input_matches(data_path, train_set, bundle.trajectory, str(path), widen)
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
    from hccr.nets import create_model, expand_input_channels, input_channels

    channels = int(getattr(train_set, "channels", 1))
    if cfg.in_chans not in (0, channels):
        raise ValueError(f"--in-chans {cfg.in_chans}: {cfg.data} holds {channels}-channel samples")
    if not cfg.init:
        n = len(train_set.charset)
        kwargs = {"in_chans": channels, **cfg.parsed_model_kwargs()}
        return create_model(cfg.arch, num_classes=n, **kwargs), cfg.arch, {}
    if resume_dir is not None:
        model = model_from_checkpoint(resume_dir)
        return model, model.arch, {"init": cfg.init}
    if cfg.model_kwargs:
        raise ValueError("--init takes the architecture from the bundle: drop --model-kwargs")
    bundle = load_matching_bundle(cfg.init, train_set, cfg.data, widen=cfg.in_chans > 1)
    if cfg.arch not in (TrainConfig().arch, bundle.arch):
        raise ValueError(
            f"--init {cfg.init} is a {bundle.arch}; drop --arch {cfg.arch} (the bundle gives it)"
        )
    record = {"init": str(bundle.path), "init_metrics": bundle.metrics}
    model = bundle.model
    if input_channels(model) != channels:
        if cfg.in_chans != channels or input_channels(model) != 1:
            raise DataMismatchError(
                f"{cfg.data}: {channels}-channel samples, model {bundle.path} takes "
                f"{input_channels(model)} (an image bundle starts an online model with "
                f"--in-chans {channels})"
            )
        model = expand_input_channels(model, channels)
        record["init_in_chans"] = channels
    return model.train(), bundle.arch, record


def prepare(cfg: TrainConfig) -> torch.device:
    """Seeds, CPU threads and the device of this process."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    return resolve_device(cfg.device)


def run_record(kind: str, command: str | None, cfg: TrainConfig, **more: Any) -> dict[str, Any]:
    """What a run folder's config.json and bundle record of how the run was made."""
    return {"kind": kind, "command": command, "data": cfg.data, "val": cfg.val, **more}


def run_train(
    cfg: TrainConfig, out: str | Path, *, resume: bool = False, command: str | None = None
) -> dict[str, Any]:
    """`hccr train`: cfg.arch from scratch (or the --init bundle) with cross-entropy; returns the
    best epoch's metrics."""
    from hccr.nets import model_kwargs

    device = prepare(cfg)
    train_set, val_set = load_datasets(cfg)
    model, arch, start = build_model(cfg, train_set, out if resume else None)
    spec = RunSpec(
        arch=arch,
        kwargs=model_kwargs(model),
        charset=train_set.charset,
        norm=train_set.norm,
        trajectory=train_set.trajectory,
        record=run_record("train", command, cfg, **start),
    )
    objective = CrossEntropyObjective(model.to(device), cfg.label_smoothing)
    return fit(objective, cfg, out, spec, train_set, val_set, resume=resume)
