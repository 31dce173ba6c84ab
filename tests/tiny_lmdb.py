"""Tiny LMDBs for training / distillation tests: a learnable bar pattern per class, made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hccr.lmdb_format import LmdbWriter
from hccr.preprocess import NormConfig

TINY_STUDENT = [
    "--arch",
    "student_lw",
    "--model-kwargs",
    '{"channels": [4, 8, 8, 8], "depths": [1, 1, 1, 1], "feat_dim": 16, "dropout": 0.0}',
]
TINY_TEACHER = [
    "--arch",
    "teacher_cnn",
    "--model-kwargs",
    '{"channels": [8, 8, 16, 16], "depths": [1, 1, 1, 1], "feat_dim": 32, "dropout": 0.0}',
]
FAST = [
    "--batch-size",
    "16",
    "--workers",
    "0",
    "--no-progress",
    "--augment",
    "0",
    "--lr",
    "0.05",
    "--threads",
    "1",
]


def make_tiny_lmdb(
    out: Path,
    num_classes: int = 5,
    per_class: int = 12,
    size: int = 32,
    seed: int = 0,
    method: str = "moment",
) -> Path:
    """Class c is a horizontal bar at height ~c plus a vertical bar at column ~c, with noise."""
    rng = np.random.default_rng(seed)
    chars = [chr(0x4E00 + i) for i in range(num_classes)]
    step = max(1, (size - 8) // num_classes)
    with LmdbWriter(out) as writer:
        for c in range(num_classes):
            for _ in range(per_class):
                image = np.zeros((size, size), np.uint8)
                y = 4 + c * step + int(rng.integers(-1, 2))
                x = size - 5 - c * step + int(rng.integers(-1, 2))
                image[max(0, y) : y + 3, 4 : size - 4] = 255
                image[4 : size - 4, max(0, x - 2) : x + 1] = 255
                image[rng.random((size, size)) < 0.03] = 180
                writer.add(image, c)
        writer.finish(
            {
                "charset": chars,
                "num_classes": num_classes,
                "image_size": size,
                "norm": NormConfig(size=size, method=method).to_dict(),
                "sources": {"tiny": num_classes * per_class},
            }
        )
    return out
