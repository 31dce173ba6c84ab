"""Top-k accuracy of a model on an LMDB, and the check that the LMDB fits the model's preprocessing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from hccr.charset import Charset
from hccr.preprocess import NormConfig, to_model_input

TOP_K = (1, 5, 10)


class DataMismatchError(ValueError):
    """An LMDB whose image size, normalisation or charset does not fit a model."""


def _norm_summary(norm: NormConfig) -> str:
    return f"{norm.size}x{norm.size} {norm.method}"


def check_data_matches(
    db_path: str | Path, db_norm: NormConfig, model_norm: NormConfig, model_name: str
) -> None:
    """Raises a one-line DataMismatchError naming both sides when the preprocessing differs."""
    if db_norm == model_norm:
        return
    db_d, model_d = db_norm.to_dict(), model_norm.to_dict()
    diffs = [
        f"{k} {db_d.get(k)!r} vs {model_d.get(k)!r}" for k in db_d if db_d.get(k) != model_d.get(k)
    ]
    what = "image size" if db_norm.size != model_norm.size else "normalisation"
    raise DataMismatchError(
        f"{db_path}: {what} differs from model {model_name}: LMDB {_norm_summary(db_norm)} vs "
        f"model {_norm_summary(model_norm)} ({'; '.join(diffs)})"
    )


def label_map(db_charset: Charset, model_charset: Charset) -> Tensor | None:
    """LMDB class index -> model class index (-1 for characters the model lacks); None if equal."""
    if db_charset == model_charset:
        return None
    return torch.tensor(
        [model_charset.index(ch) if ch in model_charset else -1 for ch in db_charset.chars],
        dtype=torch.long,
    )


@torch.no_grad()
def check_input_matches(
    db_path: str | Path, dataset: Any, trajectory: Any, model_name: str, widen: bool = False
) -> None:
    """Raises DataMismatchError when the LMDB's input (images, or trajectories drawn with its
    TrajectoryConfig) is not what `model_name` reads (`trajectory`; None: images). `widen`: an
    image model may read a trajectory LMDB's maps once widened (`--in-chans`)."""
    if dataset.trajectory == trajectory or (widen and trajectory is None):
        return
    kind = "trajectories" if dataset.trajectory is not None else "images"
    other = "trajectories" if trajectory is not None else "images"
    hint = " (drawn differently)" if kind == other else ""
    if kind == "trajectories" and other == "images":
        hint = " (start an online model from an image bundle with --in-chans 9)"
    raise DataMismatchError(f"{db_path}: holds {kind}, model {model_name} reads {other}{hint}")


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device | str | None = None,
    *,
    labels_to_model: Tensor | None = None,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1/5/10 accuracy over a loader of (uint8 images (B, 1, S, S), labels).

    Args:
        labels_to_model: optional map from the loader's label indices to the model's classes
            (see label_map); a label mapped to -1 is one the model cannot answer: it is left
            out of the scores and counted under "outside".
        amp: bf16 autocast (used on CUDA only).

    Returns:
        {"top1", "top5", "top10", "n"}, plus "outside" with `labels_to_model`; k is clipped to
        the number of classes.
    """
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = {k: 0 for k in TOP_K}
    n = outside = 0
    use_amp = amp and device.type == "cuda"
    for images, labels in tqdm(loader, desc="eval", leave=False, disable=not progress):
        x = to_model_input(images.to(device, non_blocking=True))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        if labels_to_model is not None:
            labels = labels_to_model.to(device)[labels]
            known = labels >= 0
            if not bool(known.all()):  # not scored, as `hccr recognize` does
                outside += int((~known).sum())
                x, labels = x[known], labels[known]
                if labels.numel() == 0:
                    continue
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)
        k_max = min(max(TOP_K), logits.shape[1])
        top = logits.float().topk(k_max, dim=1).indices  # (B, k_max)
        hits = top.eq(labels[:, None])  # (B, k_max)
        for k in TOP_K:
            correct[k] += int(hits[:, : min(k, k_max)].any(dim=1).sum())
        n += labels.shape[0]
    model.train(was_training)
    result: dict[str, Any] = {f"top{k}": (correct[k] / n if n else 0.0) for k in TOP_K}
    result["n"] = n
    if labels_to_model is not None:
        result["outside"] = outside
    return result
