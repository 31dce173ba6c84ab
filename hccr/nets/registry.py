"""The architecture registry: named builders with plain JSON-serialisable kwargs.

`create_model(name, **kwargs)` records the registry name on `model.arch`; every network built
here also carries `model.kwargs`, the full resolved constructor arguments (explicit widths,
block types and ranks included), so `create_model(model.arch, **model.kwargs)` rebuilds it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from hccr.charset import GB2312_LEVEL1_SIZE

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(ValueError):
    """An architecture name that is not registered; the message lists the known names."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown model {name!r}; known: {', '.join(list_models())}")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: registers `fn` under its own name; a duplicate name is an error."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def is_model(name: str) -> bool:
    """True if `name` is a registered architecture."""
    return name in _REGISTRY


def create_model(name: str, num_classes: int = GB2312_LEVEL1_SIZE, **kwargs: Any) -> nn.Module:
    """Builds architecture `name`; `kwargs` are the builder's (channels, ranks, feat_dim, ...)."""
    if name not in _REGISTRY:
        raise UnknownModelError(name)
    model = _REGISTRY[name](num_classes=num_classes, **kwargs)
    model.arch = name
    return model


def model_kwargs(model: nn.Module) -> dict[str, Any]:
    """A copy of the kwargs that rebuild `model` with `create_model(model.arch, **kwargs)`."""
    if not hasattr(model, "kwargs"):
        raise ValueError(f"{type(model).__name__} was not built by the hccr registry (no .kwargs)")
    return copy.deepcopy(model.kwargs)


def input_channels(model: nn.Module) -> int:
    """Input channels of a registry network: 1 (ink images) unless its kwargs say `in_chans`."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    return int(getattr(model, "kwargs", {}).get("in_chans", 1))


def expand_input_channels(model: nn.Module, in_chans: int) -> nn.Module:
    """A copy of a 1-channel (ink image) registry network taking `in_chans` channels, channel 0
    being the ink: the first conv keeps its weights for channel 0 and gets zeros for the others,
    so on an input whose other channels are anything the copy answers exactly as `model` does on
    channel 0 alone, until training moves those weights. How an online model starts from the
    image student (`hccr train --init BUNDLE --in-chans 9`).

    Raises:
        ValueError: `model` is not a 1-channel network, or its first layer mixes channels in a
            way a zero extension cannot keep (a depthwise first block).
    """
    import torch

    if input_channels(model) != 1:
        raise ValueError(
            f"expanding needs a 1-channel model, this one takes {input_channels(model)}"
        )
    kwargs = model_kwargs(model)
    kwargs["in_chans"] = int(in_chans)
    new = create_model(model.arch, **kwargs)
    old_state, state = model.state_dict(), new.state_dict()
    for key, value in state.items():
        old = old_state[key]
        if old.shape == value.shape:
            state[key] = old.clone()
            continue
        if old.dim() != 4 or old.shape[1] != 1 or old.shape[0] != value.shape[0]:
            raise ValueError(
                f"{model.arch}: cannot widen {key} from {tuple(old.shape)} to {tuple(value.shape)}"
            )
        widened = torch.zeros_like(value)
        widened[:, :1] = old
        state[key] = widened
    new.load_state_dict(state, strict=True)
    return new.train(model.training)
