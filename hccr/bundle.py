"""Model bundles: a folder holding a state_dict plus the JSON needed to rebuild and feed the model.

A bundle folder holds:
  bundle.json  arch, kwargs (incl. pruned channels / low-rank ranks), num_classes, norm
               (NormConfig.to_dict()), image_size, charset file name, train_config, metrics
  weights.pt   the model's state_dict (tensors only; loaded with weights_only=True)
  charset.txt  one character per line, index = line number
  README.md    the model card (data, recipe, exact command, metrics)

A training run folder is also a bundle (of its best epoch) and additionally holds config.json,
checkpoint.pt, best.pt and metrics.jsonl. Models are rebuilt through the registry and loaded
strictly; a module is never pickled.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hccr.atomic import atomic_write, atomic_write_text, partial_path
from hccr.charset import Charset, CharsetError
from hccr.preprocess import NormConfig

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "gb1-student"
BUNDLE_FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
WEIGHTS_FILE = "weights.pt"
CHARSET_FILE = "charset.txt"
CARD_FILE = "README.md"


class BundleError(ValueError):
    """A missing, incomplete or mismatched model bundle; the message is one line naming the path."""


@dataclass
class Bundle:
    """A loaded bundle: the model (eval mode, on CPU) and everything needed to feed and name it."""

    model: nn.Module
    arch: str
    kwargs: dict[str, Any]
    charset: Charset
    norm: NormConfig
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.charset)

    @property
    def image_size(self) -> int:
        return int(self.meta.get("image_size", self.norm.size))

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.meta.get("metrics") or {})

    @property
    def train_config(self) -> dict[str, Any]:
        return dict(self.meta.get("train_config") or {})


def _jsonable(value: Any) -> Any:
    """Tuples -> lists, numpy / torch scalars -> Python numbers, so bundle.json is plain JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, str):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, Path):
        return str(value)
    return value


def model_card(meta: dict[str, Any], title: str) -> str:
    """Renders the README.md model card from bundle.json's content."""
    lines = [f"# {title}", ""]
    lines.append(
        f"Architecture `{meta['arch']}` with {meta['num_classes']} classes "
        f"(charset `{meta.get('charset_name') or meta['charset']}`), input "
        f"{meta['image_size']}x{meta['image_size']} grey, ink bright."
    )
    lines += ["", "## Rebuild", "", "```python", "from hccr.bundle import load_bundle", ""]
    lines += ["bundle = load_bundle(PATH)  # strict state_dict load, weights_only=True", "```", ""]
    lines += ["Constructor kwargs (`bundle.json` `kwargs`):", "", "```json"]
    lines += [json.dumps(meta["kwargs"], ensure_ascii=False, sort_keys=True), "```", ""]
    lines += ["## Preprocessing", "", "```json", json.dumps(meta["norm"], sort_keys=True), "```"]
    metrics = meta.get("metrics") or {}
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
        for key, value in metrics.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"| {key} | {shown} |")
    train_config = meta.get("train_config") or {}
    command = train_config.get("command")
    if command:
        lines += ["", "## Recipe", "", "Exact command:", "", "```", str(command), "```"]
    data = {k: train_config[k] for k in ("data", "val") if train_config.get(k)}
    if data:
        lines += ["", "## Data", ""]
        lines += [f"- {k}: `{v}`" for k, v in data.items()]
    if train_config:
        lines += ["", "## Training config", "", "```json"]
        lines += [json.dumps(train_config, ensure_ascii=False, indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def save_bundle(
    path: str | Path,
    model: nn.Module,
    arch: str,
    kwargs: dict[str, Any],
    charset: Charset,
    norm: NormConfig,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Writes a bundle folder; returns its path.

    A new folder is built under a temporary name and renamed into place. An existing folder
    (a training run folder) gets each bundle file replaced atomically, bundle.json last.

    Args:
        path: bundle folder to create, or an existing run folder to write the bundle into.
        model: the network; its state_dict is saved (moved to CPU; DDP / compile wrappers unwrapped).
        arch: registry name, e.g. "student_lw".
        kwargs: constructor kwargs for create_model(arch, **kwargs) (pruned widths, ranks, ...).
        charset: class index -> character; len(charset) is the number of classes.
        norm: the preprocessing the model was trained with.
        metrics: measured numbers (top1, params, ...) for bundle.json and the model card.
        train_config: the resolved training config (with "command", "data", "val" if known).
        half: store floating-point tensors as float16 (half the bytes; `load_bundle` loads
            them back into the float32 model).
    """
    path = Path(path)
    model = getattr(model, "module", model)  # DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # torch.compile
    num_classes = len(charset)
    kwargs = _jsonable(dict(kwargs))
    if "num_classes" in kwargs and int(kwargs["num_classes"]) != num_classes:
        raise BundleError(
            f"{path}: kwargs num_classes={kwargs['num_classes']} but the charset has "
            f"{num_classes} characters"
        )
    kwargs["num_classes"] = num_classes
    norm_dict = norm.to_dict()
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "arch": arch,
        "kwargs": kwargs,
        "num_classes": num_classes,
        "image_size": int(norm_dict.get("size", 0)),
        "norm": _jsonable(norm_dict),
        "charset": CHARSET_FILE,
        "charset_name": getattr(charset, "name", None),
        "train_config": _jsonable(train_config or {}),
        "metrics": _jsonable(metrics or {}),
    }
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    title = path.name or arch

    def write_into(folder: Path) -> None:
        atomic_write(folder / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
        atomic_write_text(folder / CHARSET_FILE, "".join(ch + "\n" for ch in charset.chars))
        atomic_write_text(folder / CARD_FILE, model_card(meta, title))
        text = json.dumps(meta, ensure_ascii=False, indent=2) + "\n"
        atomic_write_text(folder / BUNDLE_JSON, text)  # last: a folder with bundle.json is complete

    if path.exists():
        if not path.is_dir():
            raise BundleError(f"{path}: exists and is not a folder")
        write_into(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write_into(tmp)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_bundle_meta(path: str | Path) -> dict[str, Any]:
    """Reads and checks bundle.json (no weights); raises BundleError naming the path."""
    path = Path(path)
    if path.is_file() and path.name == BUNDLE_JSON:
        path = path.parent
    if not path.is_dir():
        raise BundleError(f"{path}: no such model bundle folder")
    meta_path = path / BUNDLE_JSON
    if not meta_path.is_file():
        hint = (
            " (a run folder before its first finished epoch?)"
            if (path / "config.json").is_file()
            else ""
        )
        raise BundleError(f"{path}: not a model bundle: {BUNDLE_JSON} missing{hint}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{meta_path}: not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: expected a JSON object")
    for key in ("arch", "kwargs", "norm", "num_classes"):
        if key not in meta:
            raise BundleError(f"{meta_path}: missing key '{key}'")
    return meta


def load_bundle(path: str | Path) -> Bundle:
    """Loads a bundle folder (or a training run folder): registry rebuild + strict weights load.

    Raises:
        BundleError: one line naming the path, for a missing folder, bundle.json, charset or
            weights, an unknown architecture, or weights that do not fit the architecture.
    """
    from hccr.nets import create_model, list_models  # the registry imports every architecture

    path = Path(path)
    if path.is_file() and path.name == BUNDLE_JSON:
        path = path.parent
    meta = read_bundle_meta(path)
    charset_path = path / str(meta.get("charset") or CHARSET_FILE)
    if not charset_path.is_file():
        raise BundleError(f"{path}: bundle has no charset ({charset_path.name} missing)")
    try:
        charset = Charset.load(charset_path)
    except (CharsetError, OSError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: bad charset: {e}") from None
    charset.name = str(meta.get("charset_name") or charset.name)
    num_classes = int(meta["num_classes"])
    if len(charset) != num_classes:
        raise BundleError(
            f"{path}: charset has {len(charset)} characters but bundle.json says "
            f"num_classes={num_classes}"
        )
    try:
        norm = NormConfig.from_dict(meta["norm"])
    except (TypeError, ValueError, KeyError) as e:
        raise BundleError(f"{path}: bad norm in {BUNDLE_JSON}: {e}") from None
    arch = str(meta["arch"])
    if arch not in list_models():
        known = ", ".join(sorted(list_models()))
        raise BundleError(f"{path}: unknown architecture '{arch}'; known: {known}")
    kwargs = dict(meta["kwargs"])
    kwargs["num_classes"] = num_classes
    try:
        model = create_model(arch, **kwargs)
    except (TypeError, ValueError) as e:
        raise BundleError(f"{path}: cannot build {arch} from bundle kwargs: {e}") from None
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise BundleError(f"{path}: bundle has no weights ({WEIGHTS_FILE} missing)")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file surfaces as many exception types
        raise BundleError(f"{weights_path}: unreadable weights: {str(e).splitlines()[0]}") from None
    load_state_dict_strict(model, state, f"{path}", arch)
    model.eval()
    return Bundle(
        model=model, arch=arch, kwargs=kwargs, charset=charset, norm=norm, meta=meta, path=path
    )


def load_state_dict_strict(model: nn.Module, state: Any, where: str, arch: str) -> None:
    """model.load_state_dict(strict=True), with a one-line BundleError instead of a long trace."""
    if not isinstance(state, dict):
        raise BundleError(f"{where}: weights are not a state_dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state
        and hasattr(state[k], "shape")
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape (e.g. {mismatched[0]})")
        raise BundleError(f"{where}: weights do not fit architecture '{arch}': " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def is_bundle(path: str | Path) -> bool:
    """True for a folder holding bundle.json (a bundle or a run folder with a finished epoch)."""
    return (Path(path) / BUNDLE_JSON).is_file()


def resolve_model(spec: str | Path | None) -> Path:
    """Turns a model spec into a bundle folder path.

    None -> models/gb1-student, falling back to the first bundle in models/; otherwise a
    bundle folder or training run folder path, or the name of a bundle in models/.
    """
    if spec is None:
        default = MODELS_DIR / DEFAULT_MODEL
        if is_bundle(default):
            return default
        shipped = (
            sorted(p for p in MODELS_DIR.iterdir() if is_bundle(p)) if MODELS_DIR.is_dir() else []
        )
        if not shipped:
            raise BundleError(f"{MODELS_DIR}: no model bundle shipped; pass a model explicitly")
        return shipped[0]
    path = Path(spec)
    if path.is_file() and path.name == BUNDLE_JSON:
        path = path.parent
    if path.exists():
        read_bundle_meta(path)  # one-line error for a folder that is not (yet) a bundle
        return path
    named = MODELS_DIR / str(spec)
    if os.sep not in str(spec) and is_bundle(named):
        return named
    known = (
        sorted(p.name for p in MODELS_DIR.iterdir() if is_bundle(p)) if MODELS_DIR.is_dir() else []
    )
    raise BundleError(
        f"{spec}: no such model (not a folder, not a bundle in models/; known: "
        f"{', '.join(known) or 'none'})"
    )
