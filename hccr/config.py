"""Dataclass configs turned into argparse flags, and back into JSON for config.json / bundle.json;
TrainConfig, the config every training recipe shares."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one kebab-case flag per dataclass field; the field's default and type drive the flag."""
    hints = typing.get_type_hints(cls)  # f.type is a str under `from __future__ import annotations`
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        helptext = f.metadata.get("help", "")
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=helptext,
            )
        elif origin is tuple:
            parser.add_argument(
                flag,
                dest=f.name,
                nargs="*",
                type=args[0],
                default=default,
                help=f"{helptext} (default: {' '.join(map(str, default))})",
            )
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            inner = next(a for a in args if a is not type(None))
            parser.add_argument(
                flag,
                dest=f.name,
                type=inner,
                default=default,
                help=f"{helptext} (default: {default})",
            )
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(
                flag,
                dest=f.name,
                type=tp,
                default=default,
                choices=choices,
                help=f"{helptext} (default: {default})",
            )


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Builds the dataclass from parsed flags; tuples stay tuples so configs compare equal."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(args, f.name)
        if typing.get_origin(hints[f.name]) is tuple and value is not None:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


OPTIMIZERS = ("sgd", "adamw")


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
    in_chans: int = field(
        default=0,
        metadata={
            "help": "input channels the model must take; with --init of an image (1-channel) "
            "bundle and a trajectory LMDB, 9 (10 with pen-up maps) widens its first conv: the "
            "ink channel keeps the image model's weights, the direction channels start at zero, "
            "so the model starts answering as the image model (0: the data's channels)"
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
            "help": "bf16 autocast in training steps, on CUDA and on CPUs with bf16 arithmetic (AMX, AVX512-BF16) "
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
