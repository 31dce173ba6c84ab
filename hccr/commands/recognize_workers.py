"""`hccr recognize`'s DataLoader workers: the torch side of `hccr.commands.recognize_reader`.

Its own module, imported only when workers read the inputs, so that reading a few image files
never imports torch; a module-level class, so that it pickles under any start method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info


class WorkerDataset(IterableDataset):
    """Each DataLoader worker reads its own blocks of the reader's items."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        return self.reader.iter_items(*((info.id, info.num_workers) if info else (0, 1)))


def worker_batches(reader: Any, workers: int, collate: Any) -> Iterator[dict]:
    """The reader's batches (`reader.block` items each) from `workers` worker processes."""
    loader = DataLoader(WorkerDataset(reader), batch_size=reader.block, num_workers=workers,
                        collate_fn=collate, persistent_workers=False)  # fmt: skip
    return iter(loader)
