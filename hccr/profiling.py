"""Model cost: parameters, MACs and FLOPs, bytes on disk, median CPU latency.

MACs and FLOPs come from torch's own counter (`torch.utils.flop_counter.FlopCounterMode`), which
counts convolutions and matrix products (the layers that carry the cost) as 2 FLOPs per
multiply-add; BatchNorm, ReLU, pooling, shifts and shuffles count 0. We report both numbers
explicitly: `macs`, and `flops = 2 * macs`. (Compression papers often say "FLOPs" for MACs;
compare like with like.) Named profiling.py, not profile.py, so it never shadows the stdlib's
`profile` module.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hccr.nets.registry import input_channels
from hccr.preprocess import DEFAULT_IMAGE_SIZE


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    return next(model.parameters(), torch.empty(0)).device


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int = DEFAULT_IMAGE_SIZE, batch: int = 1) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a (batch, 1, S, S) input."""
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(
            batch, input_channels(model), input_size, input_size, device=model_device(model)
        )
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    flops = counter.get_total_flops()  # torch counts 2 FLOPs per multiply-add
    return int(flops) // 2


def count_flops(
    model: nn.Module, input_size: int = DEFAULT_IMAGE_SIZE, batch: int = 1
) -> dict[str, int]:
    """{"macs": M, "flops": 2 * M} for one forward pass at batch `batch`."""
    macs = count_macs(model, input_size, batch)
    return {"macs": macs, "flops": 2 * macs}


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())`, i.e. of a bundle's weights.pt."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def measure_latency(
    model: nn.Module,
    batch: int = 1,
    input_size: int = DEFAULT_IMAGE_SIZE,
    threads: int = 1,
    repeats: int = 20,
    warmup: int = 3,
) -> float:
    """Median wall-clock milliseconds of one eval-mode CPU forward pass at `threads` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    x = torch.rand(batch, input_channels(model), input_size, input_size)
    times = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        torch.set_num_threads(previous)
        model.train(was_training)
    return statistics.median(times)


def profile_model(
    model: nn.Module,
    input_size: int = DEFAULT_IMAGE_SIZE,
    threads: int = 1,
    repeats: int = 20,
    repeats_b64: int = 5,
    fold: bool = True,
    latency: bool = True,
) -> dict[str, Any]:
    """Params, MACs, FLOPs and bytes of `model`; latency of its deployed (BN-folded) form.

    Args:
        model: the network as trained / stored in a bundle (params and bytes are of this form).
        input_size: side S of the (B, 1, S, S) input.
        threads: CPU threads for the latency runs.
        repeats: timed runs at batch 1 (median reported); `repeats_b64` at batch 64.
        fold: time `fold_bn(model)`, as exported, rather than the model itself.
        latency: False skips the (slow) timing; latency keys are then None.
    """
    from hccr.compress.fold_bn import fold_bn

    cost = count_flops(model, input_size)
    result: dict[str, Any] = {
        "params": count_params(model),
        "macs": cost["macs"],
        "flops": cost["flops"],
        "size_bytes": state_dict_bytes(model),
        "input_size": input_size,
        "threads": threads,
        "latency_ms": None,
        "latency_ms_b64": None,
        "bn_folded": fold,
    }
    if latency:
        timed = fold_bn(copy.deepcopy(model)) if fold else model
        result["latency_ms"] = measure_latency(timed, 1, input_size, threads, repeats)
        result["latency_ms_b64"] = measure_latency(
            timed, 64, input_size, threads, repeats_b64, warmup=1
        )
    return result


def compare_table(rows: dict[str, dict[str, Any]], reference: str) -> str:
    """A plain-text table of `profile_model` results with ratios reference / row (higher = smaller)."""
    ref = rows[reference]
    keys = [
        ("params", "params"),
        ("macs", "MACs"),
        ("flops", "FLOPs"),
        ("size_bytes", "bytes"),
        ("latency_ms", "ms@1"),
        ("latency_ms_b64", "ms@64"),
    ]
    header = ["model"] + [label for _, label in keys] + [f"x{label}" for _, label in keys]
    lines = [header]
    for name, row in rows.items():
        cells = [name] + [_fmt(row.get(k)) for k, _ in keys]
        for k, _ in keys:
            a, b = ref.get(k), row.get(k)
            cells.append(f"{a / b:.1f}" if a and b else "-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if value >= 1e9:
        return f"{value / 1e9:.2f}G"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}K"
    return str(value)
