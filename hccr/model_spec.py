"""MODEL arguments shared by `hccr profile` and `hccr export`: a bundle folder, a training run
folder, the name of a bundle in models/, or a registered architecture name (randomly
initialised). A library module, so that no command module imports another."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hccr.charset import GB2312_LEVEL1_SIZE
from hccr.preprocess import DEFAULT_IMAGE_SIZE

if TYPE_CHECKING:
    from torch import nn


def add_model_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """--num-classes and --input-size: how `load_model_spec` reads an architecture-name MODEL."""
    parser.add_argument(
        "--num-classes",
        type=int,
        default=GB2312_LEVEL1_SIZE,
        help=f"classes of an architecture name (default: {GB2312_LEVEL1_SIZE})",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help=f"image side (default: the bundle's, else {DEFAULT_IMAGE_SIZE})",
    )


def load_model_spec(spec: str, num_classes: int) -> tuple[nn.Module, str, int | None]:
    """(model in eval mode, description, the bundle's image size or None) for an arch name or bundle."""
    from hccr.nets import create_model, is_model

    if is_model(spec):
        return create_model(spec, num_classes=num_classes).eval(), spec, None
    from hccr.bundle import BundleError, load_bundle, resolve_model
    from hccr.nets import list_models

    try:
        path = resolve_model(spec)
    except BundleError as e:
        raise BundleError(f"{e}; nor an architecture: {', '.join(list_models())}") from None
    bundle = load_bundle(path)
    return bundle.model.eval(), f"{spec} ({bundle.arch})", bundle.norm.size
