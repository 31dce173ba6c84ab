"""FeatureTap: forward hooks that capture named intermediate outputs during one ordinary forward.

Feature (hint) distillation needs each network's per-stage maps and its logits. Calling
`forward_stages` and then `forward` would run the trunk twice; a tap on the stage modules gets
both from one pass. Networks that do not name their stage modules fall back to the two calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class FeatureTap:
    """Context manager: `tap.outputs[name]` holds the output of each named submodule."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"{type(model).__name__} has no submodule {missing[0]!r}")
        self.names = list(names)
        self._modules = [modules[n] for n in self.names]
        self._handles: list = []
        self.outputs: dict[str, Tensor] = {}

    def __enter__(self) -> FeatureTap:
        for name, module in zip(self.names, self._modules, strict=True):
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
            self.outputs[name] = output

        return hook


def stage_module_names(model: nn.Module) -> list[str] | None:
    """Names of the modules whose outputs are forward_stages' maps, where the net exposes them."""
    names = getattr(model, "stage_module_names", None)
    if callable(names):
        return list(names())
    ends = getattr(model, "stage_ends", None)
    if ends is not None and isinstance(getattr(model, "blocks", None), nn.ModuleList):
        return [f"blocks.{i}" for i in ends]
    return None


def stages_and_logits(model: nn.Module, images: Tensor) -> tuple[list[Tensor], Tensor]:
    """(forward_stages(images), model(images)) from one forward pass where possible."""
    names = stage_module_names(model)
    if names is None:
        return list(model.forward_stages(images)), model(images)
    with FeatureTap(model, names) as tap:
        logits = model(images)
    return [tap.outputs[n] for n in names], logits
