"""`LmdbDataset`: normalised samples from an hccr LMDB, and the training-time augmentation."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import lmdb
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from hccr.charset import Charset
from hccr.lmdb_format import decode_sample, open_lmdb, read_meta, sample_key
from hccr.preprocess import NormConfig

Transform = Callable[[torch.Tensor], torch.Tensor]


class LmdbDataset(Dataset):
    """Samples of an hccr LMDB as (uint8 tensor (1, S, S), class index).

    The LMDB environment is opened lazily in each process: an Environment opened in `__init__`
    and inherited by DataLoader workers breaks under spawn and segfaults after fork.
    """

    def __init__(self, path: str | Path, transform: Transform | None = None) -> None:
        self.path = Path(path)
        self.meta: dict[str, Any] = read_meta(self.path)
        self.transform = transform
        self.image_size: int = int(self.meta["image_size"])
        self.norm = NormConfig.from_dict(self.meta["norm"])
        self.charset = Charset(
            self.meta["charset"], name=str(self.meta.get("charset_name", "lmdb"))
        )
        self._len = int(self.meta["num_samples"])
        self._env: lmdb.Environment | None = None
        self._pid: int | None = None

    @property
    def env(self) -> lmdb.Environment:
        if self._env is None or self._pid != os.getpid():  # DataLoader workers fork: reopen in each
            self._env = open_lmdb(self.path)
            self._pid = os.getpid()
        return self._env

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_env"] = None  # never pickle an open environment into a spawned worker
        return state

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label, _ = self.read(index)
        x = torch.from_numpy(image.copy()).unsqueeze(0)  # (1, S, S) uint8
        if self.transform is not None:
            x = self.transform(x)
        return x, label

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch at once (DataLoader calls this when it exists): one read transaction and
        one tensor allocation serve every sample, instead of one each."""
        S = self.image_size
        images = torch.empty((len(indices), 1, S, S), dtype=torch.uint8)
        pixels = images.numpy()  # (B, 1, S, S), shares memory with `images`
        labels = []
        with self.env.begin(buffers=True) as txn:
            for i, index in enumerate(indices):
                image, label, _ = self._decode(txn, index)
                pixels[i, 0] = image
                labels.append(label)
        if self.transform is None:
            return list(zip(images, labels, strict=True))
        return [(self.transform(x), label) for x, label in zip(images, labels, strict=True)]

    def read(self, index: int) -> tuple[Any, int, int]:
        """The raw sample: ((S, S) uint8 array, label, writer id)."""
        with self.env.begin(buffers=True) as txn:
            return self._decode(txn, index)

    def _decode(self, txn: lmdb.Transaction, index: int) -> tuple[Any, int, int]:
        if not 0 <= index < self._len:
            raise IndexError(f"{self.path}: sample {index} out of range 0..{self._len - 1}")
        value = txn.get(sample_key(index))
        if value is None:
            raise KeyError(f"{self.path}: sample {index} is missing")
        return decode_sample(bytes(value), self.image_size)

    def labels(self) -> list[int]:
        """All labels in index order (one pass over the database)."""
        out = []
        with self.env.begin(buffers=True) as txn:
            for i in range(self._len):
                out.append(int.from_bytes(bytes(txn.get(sample_key(i))[:4]), "little", signed=True))
        return out


class ElasticWarp(torch.nn.Module):
    """torchvision's `v2.ElasticTransform` (Simard et al. 2003) computed with OpenCV, ~15x faster.

    The same random field: uniform noise in [-1, 1] per pixel and axis, Gaussian-blurred (kernel
    8 * sigma + 1, reflected borders), scaled so a pixel moves by `alpha / 2` times the blurred
    noise, then a bilinear resample with black outside. torchvision blurs two full-size fields
    with a 33-tap torch convolution: 2.3 ms of a 64x64 sample here, the largest cost of a
    training sample on CPU.
    """

    def __init__(self, alpha: float, sigma: float) -> None:
        super().__init__()
        self.alpha, self.sigma = float(alpha), float(sigma)
        k = int(8 * self.sigma + 1)
        self.kernel = k + 1 if k % 2 == 0 else k

    def displacement(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """A random (dx, dy) field in pixels, each (h, w) float32."""
        noise = (torch.rand((2, h, w)) * 2 - 1).numpy()
        k, scale = (self.kernel, self.kernel), self.alpha / 2
        dx, dy = (
            cv2.GaussianBlur(n, k, self.sigma, borderType=cv2.BORDER_REFLECT_101) for n in noise
        )
        return dx * scale, dy * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (1, S, S) uint8
        h, w = x.shape[-2:]
        dx, dy = self.displacement(h, w)
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        warped = cv2.remap(
            x[0].numpy(),
            gx + dx,
            gy + dy,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return torch.from_numpy(warped).unsqueeze(0)


class StrokeWidthJitter(torch.nn.Module):
    """Thickens (dilation) or thins (erosion) ink by one pixel with probability `p` each."""

    def __init__(self, p: float = 0.3) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (1, S, S) uint8
        r = float(torch.rand(()))
        if r >= 2 * self.p:
            return x
        f = x.float().unsqueeze(0)  # (1, 1, S, S)
        if r < self.p:
            f = F.max_pool2d(f, 3, stride=1, padding=1)
        else:
            f = -F.max_pool2d(-f, 3, stride=1, padding=1)
        return f.squeeze(0).to(torch.uint8)


def train_augment(size: int, strength: float = 1.0) -> Transform:
    """Writer-like variation on normalised uint8 samples: affine, elastic, stroke width.

    `strength` scales every range; 0 disables augmentation.
    """
    if strength <= 0:
        return v2.Identity()
    s = strength
    return v2.Compose(
        [
            v2.RandomApply(
                [
                    v2.RandomAffine(
                        degrees=8 * s,
                        translate=(0.06 * s, 0.06 * s),
                        scale=(1 - 0.12 * s, 1 + 0.08 * s),
                        shear=(-12 * s, 12 * s, -5 * s, 5 * s),
                    )
                ],
                p=0.8,
            ),
            v2.RandomApply([ElasticWarp(alpha=8.0 * size / 64 * s, sigma=4.0 * size / 64)], p=0.3),
            StrokeWidthJitter(p=0.2),
        ]
    )
