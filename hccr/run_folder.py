"""Run folders: the files a training run writes, resuming, and the command that reproduces it.

RUN_DIR holds config.json (resolved configs + exact command), checkpoint.pt (latest epoch, for
--resume), best.pt (best epoch's weights), metrics.jsonl (one JSON line per epoch) and log.csv
(the same as CSV), plus the bundle files of the best epoch (see hccr.bundle).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from hccr.atomic import atomic_write, atomic_write_text
from hccr.bundle import BundleError
from hccr.charset import Charset
from hccr.preprocess import NormConfig
from hccr.trajectory import TrajectoryConfig

CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.csv"

T = TypeVar("T")


@dataclass
class RunSpec:
    """What `fit` saves: the trained network's identity and the record for config.json."""

    arch: str
    kwargs: dict[str, Any]
    charset: Charset
    norm: NormConfig
    record: dict[str, Any] = field(default_factory=dict)  # config.json (configs, command, ...)
    peer_arch: str | None = None  # mutual learning: the peer is saved as a bundle in RUN_DIR/peer
    peer_kwargs: dict[str, Any] | None = None
    trajectory: TrajectoryConfig | None = None  # an online model's input (None: images)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file, so `path` is complete or untouched."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _kwargs_key(kwargs: dict[str, Any]) -> str:
    """Constructor kwargs for comparison; checkpoints written before nets took `in_chans` read
    ink images, so a missing `in_chans` is 1."""
    return json.dumps({"in_chans": 1, **kwargs}, sort_keys=True)


def check_resumable(checkpoint: dict[str, Any], path: Path, spec: RunSpec) -> None:
    """One-line error when a checkpoint belongs to another architecture or class count."""
    ck_arch = checkpoint.get("arch")
    ck_classes = int(checkpoint.get("num_classes", -1))
    n = len(spec.charset)
    if ck_arch != spec.arch or ck_classes != n:
        raise BundleError(
            f"{path}: checkpoint is {ck_arch} with {ck_classes} classes; cannot resume it as "
            f"{spec.arch} with {n} classes (check --arch and --data)"
        )
    ck_kwargs = checkpoint.get("kwargs") or {}
    if _kwargs_key(ck_kwargs) != _kwargs_key(spec.kwargs):
        raise BundleError(
            f"{path}: checkpoint was built with other {spec.arch} kwargs ({json.dumps(ck_kwargs)}); "
            "cannot resume with --model-kwargs that differ"
        )


def truncate_metrics(out: Path, start_epoch: int) -> None:
    """On resume, drop log lines of epochs after the checkpoint (they will be re-run)."""
    path = out / METRICS_FILE
    if not path.is_file():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in rows if int(r.get("epoch", 0)) <= start_epoch]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    (out / LOG_FILE).unlink(missing_ok=True)
    for row in kept:
        _append_csv(out, row)


def append_metrics(out: Path, row: dict[str, Any]) -> None:
    with open(out / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    _append_csv(out, row)


def _append_csv(out: Path, row: dict[str, Any]) -> None:
    log = out / LOG_FILE
    keys = list(row)
    new = not log.is_file()
    with open(log, "a", encoding="utf-8") as f:
        if new:
            f.write(",".join(keys) + "\n")
        f.write(
            ",".join(f"{row[k]:.6g}" if isinstance(row[k], float) else str(row[k]) for k in keys)
            + "\n"
        )


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The metrics.jsonl rows of a run folder."""
    path = Path(out) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def merge_resume_config(cfg: T, out: str | Path, section: str = "train") -> T:
    """On --resume, fields left at their default are taken from the run's config.json[section]."""
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        return cfg
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get(section) or {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    cls = type(cfg)
    defaults = cls()
    values = asdict(cfg)
    for name, value in saved.items():
        if name in values and values[name] == getattr(defaults, name):
            values[name] = tuple(value) if isinstance(getattr(defaults, name), tuple) else value
    return cls(**values)


def read_run_config(out: str | Path) -> dict[str, Any]:
    """config.json of a run folder ({} when there is none yet)."""
    path = Path(out) / CONFIG_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def command_line(
    verb: str,
    positional: list[str],
    configs: list[Any],
    out: str | Path,
    extra: list[str] | None = None,
    skip: tuple[str, ...] = (),
) -> str:
    """The exact `hccr VERB ...` command reproducing a run: every non-default config flag.

    `verb` may be several words ("compress stem"); `skip` names config fields the command has
    no flag for (compress takes the architecture from its MODEL).
    """
    parts = ["hccr", *verb.split(), *positional]
    for cfg in configs:
        defaults = type(cfg)()
        for name, value in asdict(cfg).items():
            always = name in ("data", "val", "arch", "kd_mode")  # the flags the contract names
            if name == "progress" or name in skip:
                continue
            if value == getattr(defaults, name) and not always:
                continue
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else "--no-" + name.replace("_", "-"))
            elif isinstance(value, tuple | list):
                parts += [flag, *map(str, value)]
            else:
                parts += [flag, str(value)]
    parts += ["-o", str(out), *(extra or [])]
    return shlex.join(parts)
