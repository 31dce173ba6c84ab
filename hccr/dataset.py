"""`LmdbDataset`: normalised samples from an hccr LMDB (training augmentation: `hccr.augment`).

Training, evaluation and `hccr recognize` read LMDBs through it. It imports no torch: `read`
gives numpy arrays, and only the DataLoader-facing `__getitem__` / `__getitems__` make tensors
(torch is imported there), so recognising from an LMDB does not need the training stack.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lmdb

from hccr.charset import Charset
from hccr.lmdb_format import decode_sample, open_lmdb, read_meta, sample_key
from hccr.preprocess import NormConfig

if TYPE_CHECKING:
    import torch

Transform = Callable[["torch.Tensor"], "torch.Tensor"]


class LmdbDataset:
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
        import torch

        image, label, _ = self.read(index)
        x = torch.from_numpy(image.copy()).unsqueeze(0)  # (1, S, S) uint8
        if self.transform is not None:
            x = self.transform(x)
        return x, label

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch at once (DataLoader calls this when it exists): one read transaction and
        one tensor allocation serve every sample, instead of one each."""
        import torch

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
