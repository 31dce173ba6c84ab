"""Model bundles: a folder holding a state_dict plus the JSON needed to rebuild and feed the model.

A bundle folder holds:
  bundle.json  arch, kwargs (incl. pruned channels / low-rank ranks), num_classes, norm
               (NormConfig.to_dict()), image_size, input ("image", or "strokes" for an
               online model, with its TrajectoryConfig under "trajectory"), charset file name,
               train_config, metrics
  weights.pt   the model's state_dict (tensors only; loaded with weights_only=True)
  charset.txt  one character per line, index = line number
  README.md    the model card (data, recipe, exact command, metrics); a generated card is
               rewritten on every save, a hand-written one (without
               `hccr.model_card.GENERATED_CARD_MARK`) is kept

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
from typing import TYPE_CHECKING, Any

from hccr.atomic import atomic_write, atomic_write_text, partial_path
from hccr.charset import Charset, CharsetError
from hccr.model_card import is_generated_card, jsonable, model_card
from hccr.preprocess import NormConfig
from hccr.trajectory import INPUT_KINDS, TrajectoryConfig

if TYPE_CHECKING:
    from torch import nn

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# The shipped bundle used when none is named (`default_model`), per kind of input: images for
# `hccr recognize` and the Python API, pen strokes for the demo's panel, which sends points.
DEFAULT_MODEL = "gb1-student"
DEFAULT_STROKES_MODEL = "gb1-online"
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
    def input_kind(self) -> str:
        """ "image" (character images) or "strokes" (pen trajectories: an online model)."""
        return str(self.meta.get("input", "image"))

    @property
    def trajectory(self) -> TrajectoryConfig | None:
        """An online model's trajectory features (None for an image model)."""
        return bundle_trajectory(self.meta, self.path)

    @property
    def train_config(self) -> dict[str, Any]:
        return dict(self.meta.get("train_config") or {})


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
    trajectory: TrajectoryConfig | None = None,
) -> Path:
    """Writes a bundle folder; returns its path.

    A new folder is built under a temporary name and renamed into place. An existing folder
    (a training run folder, or a shipped bundle being re-exported) gets each bundle file
    replaced atomically, bundle.json last; its model card only if that card is generated
    (`is_generated_card`), so a hand-written card survives.

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
        trajectory: an online model's input (pen trajectories drawn as maps); None: images.
    """
    path = Path(path)
    model = getattr(model, "module", model)  # DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # torch.compile
    num_classes = len(charset)
    kwargs = jsonable(dict(kwargs))
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
        "norm": jsonable(norm_dict),
        "input": "image" if trajectory is None else "strokes",
        **({} if trajectory is None else {"trajectory": trajectory.to_dict()}),
        "charset": CHARSET_FILE,
        "charset_name": getattr(charset, "name", None),
        "train_config": jsonable(train_config or {}),
        "metrics": jsonable(metrics or {}),
    }
    import torch

    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    title = path.name or arch

    def write_into(folder: Path) -> None:
        atomic_write(folder / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
        atomic_write_text(folder / CHARSET_FILE, "".join(ch + "\n" for ch in charset.chars))
        if is_generated_card(folder / CARD_FILE):
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


def bundle_trajectory(meta: dict[str, Any], path: Path | None) -> TrajectoryConfig | None:
    """The TrajectoryConfig of an online bundle's metadata, None for an image bundle.

    Raises:
        BundleError: an input kind this version does not know, or bad trajectory settings.
    """
    kind = meta.get("input", "image")
    if kind == "image":
        return None
    if kind != "strokes":
        raise BundleError(f"{path}: unknown input kind {kind!r} in {BUNDLE_JSON}")
    try:
        return TrajectoryConfig.from_dict(meta["trajectory"])
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{path}: bad trajectory in {BUNDLE_JSON}: {e}") from None


@dataclass(frozen=True)
class BundleInfo:
    """A bundle without its weights: what the recogniser needs when an export does the work."""

    path: Path
    arch: str
    kwargs: dict[str, Any]
    charset: Charset
    norm: NormConfig
    meta: dict[str, Any]
    trajectory: TrajectoryConfig | None = None  # an online model's input; None: images


def load_bundle_info(path: str | Path) -> BundleInfo:
    """Reads bundle.json, the charset and the NormConfig; no torch, weights.pt is not opened.

    Raises:
        BundleError: one line naming the path, for a missing folder, bundle.json or charset,
            or a bad charset or norm.
    """
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
    kwargs = dict(meta["kwargs"])
    kwargs["num_classes"] = num_classes
    trajectory = bundle_trajectory(meta, path)
    return BundleInfo(path, str(meta["arch"]), kwargs, charset, norm, meta, trajectory)


def load_bundle(path: str | Path) -> Bundle:
    """Loads a bundle folder (or a training run folder): registry rebuild + strict weights load.

    Raises:
        BundleError: one line naming the path, for a missing folder, bundle.json, charset or
            weights, an unknown architecture, or weights that do not fit the architecture.
    """
    import torch

    from hccr.nets import create_model, list_models  # the registry imports every architecture

    info = load_bundle_info(path)
    path, arch, kwargs = info.path, info.arch, info.kwargs
    if arch not in list_models():
        known = ", ".join(sorted(list_models()))
        raise BundleError(f"{path}: unknown architecture '{arch}'; known: {known}")
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
        model=model,
        arch=arch,
        kwargs=kwargs,
        charset=info.charset,
        norm=info.norm,
        meta=info.meta,
        path=path,
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


def shipped_bundles() -> dict[str, Path]:
    """Name -> folder for every bundle in models/, by name."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(MODELS_DIR.iterdir()) if is_bundle(p)}


def bundle_input_kind(path: str | Path) -> str:
    """A bundle's input kind from its bundle.json alone: "image" or "strokes" (online).

    Raises:
        BundleError: not a readable bundle, an input kind this version does not know, or
            bad trajectory settings.
    """
    trajectory = bundle_trajectory(read_bundle_meta(path), Path(path))
    return "image" if trajectory is None else "strokes"


def default_model(input_kind: str = "image") -> Path:
    """The shipped bundle to use for inputs of `input_kind` when no model is named.

    "image" (`hccr recognize`, `Recognizer.from_bundle(None)`, the demo's answer to an image):
    models/gb1-student, else the first image bundle in models/, else the first bundle.
    "strokes" (the demo's panel, which sends pen points): models/gb1-online, else the first
    online bundle in models/, else the image default: an online bundle reads the strokes
    themselves and read real pen input better (BENCHMARKS.md, "Online recogniser").

    Raises:
        BundleError: models/ holds no bundle.
    """
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    shipped = shipped_bundles()
    if not shipped:
        raise BundleError(f"{MODELS_DIR}: no model bundle shipped; pass a model explicitly")
    named = DEFAULT_MODEL if input_kind == "image" else DEFAULT_STROKES_MODEL
    ranked = [shipped[named]] if named in shipped else []
    ranked += [p for n, p in shipped.items() if n != named]
    for path in ranked:
        try:
            if bundle_input_kind(path) == input_kind:
                return path
        except BundleError:
            continue  # a broken bundle is not a default; naming it gives its one-line error
    return default_model("image") if input_kind == "strokes" else ranked[0]


def resolve_model(spec: str | Path | None) -> Path:
    """Turns a model spec into a bundle folder path.

    None -> the default image bundle (`default_model`); otherwise a bundle folder or training
    run folder path, or the name of a bundle in models/.
    """
    if spec is None:
        return default_model("image")
    path = Path(spec)
    if path.is_file() and path.name == BUNDLE_JSON:
        path = path.parent
    if path.exists():
        read_bundle_meta(path)  # one-line error for a folder that is not (yet) a bundle
        return path
    named = MODELS_DIR / str(spec)
    if os.sep not in str(spec) and is_bundle(named):
        return named
    known = list(shipped_bundles())
    raise BundleError(
        f"{spec}: no such model (not a folder, not a bundle in models/; known: "
        f"{', '.join(known) or 'none'})"
    )
