"""`LmdbDataset`: normalised samples from an hccr LMDB (training augmentation: `hccr.augment`).

A trajectory LMDB (`"input": "strokes"` in its metadata) stores normalised pen points; each
sample is drawn here (`hccr.trajectory.draw`), after the points' augmentation when training,
into (C, S, S) maps: the DataLoader workers do the drawing.

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
from hccr.lmdb_format import (
    LmdbFormatError,
    decode_points_sample,
    decode_sample,
    open_lmdb,
    read_meta,
    sample_key,
)
from hccr.preprocess import NormConfig
from hccr.trajectory import TrajectoryConfig, draw

if TYPE_CHECKING:
    import torch

Transform = Callable[["torch.Tensor"], "torch.Tensor"]
# a trajectory LMDB's transform: (normalised points, config) -> (C, S, S) uint8 maps
StrokeTransform = Callable[[list[Any], TrajectoryConfig], Any]


class LmdbDataset:
    """Samples of an hccr LMDB as (uint8 tensor (C, S, S), class index); C is 1 for an image
    LMDB, `trajectory.channels` for a trajectory LMDB (whose `transform` is a StrokeTransform).

    The LMDB environment is opened lazily in each process: an Environment opened in `__init__`
    and inherited by DataLoader workers breaks under spawn and segfaults after fork.
    """

    def __init__(
        self, path: str | Path, transform: Transform | StrokeTransform | None = None
    ) -> None:
        self.path = Path(path)
        self.meta: dict[str, Any] = read_meta(self.path)
        self.transform = transform
        self.image_size: int = int(self.meta["image_size"])
        self.norm = NormConfig.from_dict(self.meta["norm"])
        self.input_kind: str = str(self.meta.get("input", "image"))
        self.trajectory: TrajectoryConfig | None = None
        if self.input_kind == "strokes":
            try:
                self.trajectory = TrajectoryConfig.from_dict(self.meta["trajectory"])
            except (KeyError, TypeError, ValueError) as e:
                raise LmdbFormatError(f"{self.path}: bad trajectory settings ({e})") from None
        self.channels = self.trajectory.channels if self.trajectory is not None else 1
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

        if self.trajectory is not None:
            with self.env.begin(buffers=True) as txn:
                maps, label = self._draw(txn, index)
            return torch.from_numpy(maps), label
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
        images = torch.empty((len(indices), self.channels, S, S), dtype=torch.uint8)
        pixels = images.numpy()  # (B, C, S, S), shares memory with `images`
        labels = []
        with self.env.begin(buffers=True) as txn:
            for i, index in enumerate(indices):
                if self.trajectory is not None:
                    pixels[i], label = self._draw(txn, index)
                else:
                    pixels[i, 0], label, _ = self._decode(txn, index)
                labels.append(label)
        if self.transform is None or self.trajectory is not None:
            return list(zip(images, labels, strict=True))
        return [(self.transform(x), label) for x, label in zip(images, labels, strict=True)]

    def read(self, index: int) -> tuple[Any, int, int]:
        """The raw sample, not augmented: ((S, S) uint8 array, label, writer id); for a
        trajectory LMDB the drawn (C, S, S) maps."""
        with self.env.begin(buffers=True) as txn:
            if self.trajectory is None:
                return self._decode(txn, index)
            points, label, writer = decode_points_sample(self._value(txn, index))
            return draw(points, self.trajectory), label, writer

    def read_points(self, index: int) -> tuple[list[Any], int, int]:
        """A trajectory LMDB's sample: (normalised float32 (N, 2) points per stroke, label,
        writer id)."""
        if self.trajectory is None:
            raise ValueError(f"{self.path}: an image LMDB holds no points")
        with self.env.begin(buffers=True) as txn:
            return decode_points_sample(self._value(txn, index))

    def _draw(self, txn: lmdb.Transaction, index: int) -> tuple[Any, int]:
        points, label, _ = decode_points_sample(self._value(txn, index))
        if self.transform is not None:
            return self.transform(points, self.trajectory), label  # type: ignore[call-arg]
        return draw(points, self.trajectory), label  # type: ignore[arg-type]

    def _value(self, txn: lmdb.Transaction, index: int) -> bytes:
        if not 0 <= index < self._len:
            raise IndexError(f"{self.path}: sample {index} out of range 0..{self._len - 1}")
        value = txn.get(sample_key(index))
        if value is None:
            raise KeyError(f"{self.path}: sample {index} is missing")
        return bytes(value)

    def _decode(self, txn: lmdb.Transaction, index: int) -> tuple[Any, int, int]:
        return decode_sample(self._value(txn, index), self.image_size)

    def labels(self) -> list[int]:
        """All labels in index order (one pass over the database)."""
        out = []
        with self.env.begin(buffers=True) as txn:
            for i in range(self._len):
                out.append(int.from_bytes(bytes(txn.get(sample_key(i))[:4]), "little", signed=True))
        return out
