"""Strided stem: the full-resolution 3x3 conv + 2x2 max-pool become one 4x4 stride-2 conv.

At 64x64 the first conv has a single input channel and a handful of filters, so it and the
max-pool after it are memory-bound: in the int8 ONNX export of the shipped student they take
~30% of the run time for ~2.5% of the FLOPs (ONNX Runtime's node profile, batch 256). A 4x4
stride-2 conv (padding 1) sees the same input rows and columns, 2i-1 .. 2i+2, and works at the
pooled resolution.

The initial kernel is exact for the linear part: a 3x3 conv followed by 2x2 average pooling is
the 4x4 stride-2 conv whose kernel is the mean of the 3x3 kernel placed at the four offsets, and
BatchNorm's per-channel affine map commutes with that average. What changes is max -> mean and
where the ReLU sits; a knowledge-transfer fine-tune from the original model absorbs it
(`hccr compress stem`). Everything after the stem keeps its trained weights.
"""

from __future__ import annotations

import torch
from torch import nn

from hccr.nets.registry import create_model, model_kwargs


def strided_stem_kernel(w3: torch.Tensor) -> torch.Tensor:
    """(C, Cin, 3, 3) kernel -> the (C, Cin, 4, 4) kernel of 3x3 conv + 2x2 average pooling."""
    if w3.shape[-2:] != (3, 3):
        raise ValueError(f"expected a 3x3 kernel, got {tuple(w3.shape)}")
    w4 = w3.new_zeros(*w3.shape[:2], 4, 4)
    for dy in (0, 1):
        for dx in (0, 1):
            w4[:, :, dy : dy + 3, dx : dx + 3] += w3 / 4
    return w4


def to_strided_stem(model: nn.Module) -> nn.Module:
    """`model` rebuilt with `stem="stride2"`: the stem kernel from `strided_stem_kernel`, every
    other tensor copied unchanged (a registry model whose first block is a plain 3x3 conv)."""
    kwargs = model_kwargs(model)
    if kwargs.get("stem", "pool") != "pool":
        raise ValueError(f"the model already has the {kwargs['stem']!r} stem")
    if kwargs["blocks"][0] != "conv" or "blocks.0" in kwargs["ranks"]:
        raise ValueError("a strided stem replaces a plain 3x3 'conv' first block (no rank)")
    kwargs["stem"] = "stride2"
    strided = create_model(model.arch, **kwargs)
    state = dict(model.state_dict())
    state["blocks.0.conv.weight"] = strided_stem_kernel(state["blocks.0.conv.weight"])
    strided.load_state_dict(state)
    strided.train(model.training)
    return strided
