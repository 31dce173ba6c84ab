"""Where a training process runs: its device, its place in a torchrun group, its seeds.

Launched by `torchrun --nproc-per-node N`, WORLD_SIZE / RANK / LOCAL_RANK say which process this
is; a plain launch is a group of one.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistEnv:
    """Joins the torchrun process group when WORLD_SIZE > 1; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        owns = True
    return DistEnv(rank, world_size, local_rank, owns)


def resolve_device(name: str = "") -> torch.device:
    """`name` (cuda / cpu), or CUDA when available; under torchrun the LOCAL_RANK GPU."""
    name = name or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}; use cuda or cpu")
    return torch.device(name)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def bf16_autocast_pays(device: torch.device) -> bool:
    """Whether bf16 autocast speeds up training steps on `device`.

    On CUDA, and on CPUs with native bf16 arithmetic, where oneDNN runs bf16 convolutions and
    matmuls on it: AMX tile units (Intel Xeon 4th generation and later; training steps 1.8x to
    3.2x faster than float32 on 2 cores) and AVX512-BF16 (AMD EPYC Zen 4 and later, Intel Cooper
    Lake; 2.0x to 2.6x), both measured by bench/train_step.py. Other CPUs train in float32.
    """
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
