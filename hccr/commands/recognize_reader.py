"""Input side of `hccr recognize`: which files are inputs, and their normalised samples in order.

An online model (`trajectory` set) reads pen trajectories: `.pot` records and trajectory LMDBs,
drawn as its maps; an image model reads images, `.gnt` and image LMDBs, and `.pot` records inked.
What a model cannot read is one error line per input.

Plain Python and numpy; torch is imported only when DataLoader workers read many inputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
    ".pnm",
)  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One input: an image file, a .gnt or .pot file or an .lmdb folder."""

    kind: str  # "image" | "gnt" | "pot" | "lmdb"
    path: Path


def _is_lmdb(path: Path) -> bool:
    return path.is_dir() and (path.suffix == ".lmdb" or (path / "data.mdb").is_file())


def collect_sources(inputs: Sequence[str | Path]) -> tuple[list[Source], list[str], list[str]]:
    """Expands the command-line inputs into sources.

    Returns:
        (sources, notes, errors): notes name files a folder held that are not inputs; errors
        name inputs that do not exist.
    """
    sources: list[Source] = []
    notes: list[str] = []
    errors: list[str] = []
    for raw in inputs:
        path = Path(raw)
        if _is_lmdb(path):
            sources.append(Source("lmdb", path))
        elif path.is_dir():
            skipped = 0
            for root, dirs, files in os.walk(path):
                root_path = Path(root)
                dirs.sort()
                for d in list(dirs):
                    if _is_lmdb(root_path / d):
                        sources.append(Source("lmdb", root_path / d))
                        dirs.remove(d)  # an LMDB's files are not images
                for name in sorted(files):
                    suffix = Path(name).suffix.lower()
                    if suffix in (".gnt", ".pot"):
                        sources.append(Source(suffix[1:], root_path / name))
                    elif suffix in IMAGE_EXTENSIONS:
                        sources.append(Source("image", root_path / name))
                    else:
                        skipped += 1
            if skipped:
                notes.append(
                    f"{path}: skipped {skipped} file(s) that are not images "
                    f"({', '.join(IMAGE_EXTENSIONS)}), .gnt / .pot files or .lmdb folders"
                )
        elif path.is_file():
            suffix = path.suffix.lower()
            kind = suffix[1:] if suffix in (".gnt", ".pot") else "image"
            sources.append(Source(kind, path))
        else:
            errors.append(f"{path}: no such file or folder")
    return sources, notes, errors


def _item(source: Path, index: int | None, label: str | None, image=None, error=None) -> dict:
    return {"source": str(source), "index": index, "label": label, "image": image, "error": error}


class RecognizeReader:
    """Streams normalised samples (or error records) from sources, in input order.

    Plain Python and numpy (no torch): a few image files are read in the main process. For
    many inputs a torch DataLoader runs it in worker processes (`loader_batches`): items are handed to
    workers in blocks of `block` consecutive items, block k to worker k % num_workers. With
    batch_size=block each worker's batches are then exactly its blocks, and the loader's
    round-robin over workers yields them in input order. Every item yields exactly one record
    (a sample or an error), which keeps the blocks aligned.
    """

    def __init__(
        self, sources: Sequence[Source], norm: Any, block: int, trajectory: Any = None
    ) -> None:
        self.sources = list(sources)
        self.norm = norm
        self.block = block
        self.trajectory = trajectory  # an online model's TrajectoryConfig; None: an image model

    def _not_strokes(self, path: Path, what: str) -> dict | None:
        """The error record for an image input given to an online model, else None."""
        if self.trajectory is None:
            return None
        message = f"{path}: {what}; the online model reads pen strokes (.pot, trajectory LMDB)"
        return _item(path, None, None, error=message)

    def iter_items(self, worker: int = 0, num_workers: int = 1) -> Iterator[dict]:
        counter = 0
        for source in self.sources:
            # every worker walks every source so that all agree on item numbering
            for make in getattr(self, f"_iter_{source.kind}")(source.path):
                if (counter // self.block) % num_workers == worker:
                    yield make()
                counter += 1

    def _iter_image(self, path: Path) -> Iterator:
        refused = self._not_strokes(path, "an image")
        yield (lambda: refused) if refused else (lambda: self._load_image(path))

    def _load_image(self, path: Path) -> dict:
        from PIL import Image, UnidentifiedImageError

        from hccr.preprocess import EmptyImageError, preprocess

        try:
            with Image.open(path) as im:
                im.load()
                image = preprocess(im, self.norm)
        except UnidentifiedImageError:
            return _item(path, None, None, error=f"{path}: not an image file")
        except EmptyImageError as e:
            return _item(path, None, None, error=f"{path}: empty image ({e})")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            return _item(path, None, None, error=f"{path}: cannot read image: {e}")
        return _item(path, None, None, image=image[None])

    def _iter_gnt(self, path: Path) -> Iterator:
        from hccr.casia import iter_gnt
        from hccr.preprocess import EmptyImageError, ink_from_white_background, normalize

        refused = self._not_strokes(path, "a .gnt file holds images")
        if refused:
            yield lambda: refused
            return

        def sample(i: int, record) -> dict:
            try:
                image = normalize(ink_from_white_background(record.bitmap), self.norm)
            except EmptyImageError:
                where = f"{path}: record {i} at byte {record.offset}"
                return _item(path, i, record.char, error=f"{where}: empty bitmap (no ink)")
            return _item(path, i, record.char, image=image[None])

        yield from self._iter_records(path, iter_gnt, sample)

    def _iter_pot(self, path: Path) -> Iterator:
        from hccr.casia import iter_pot
        from hccr.preprocess import EmptyImageError, normalize
        from hccr.trajectory import prepare_strokes, strokes_to_ink

        def sample(i: int, record) -> dict:
            try:
                if self.trajectory is not None:
                    maps = prepare_strokes(record.strokes, self.trajectory)
                else:  # an image model: the strokes inked, then the image normalisation
                    maps = normalize(strokes_to_ink(record.strokes), self.norm)[None]
            except (EmptyImageError, ValueError) as e:
                where = f"{path}: record {i} at byte {record.offset}"
                return _item(path, i, record.char, error=f"{where}: {e}")
            return _item(path, i, record.char, image=maps)

        yield from self._iter_records(path, iter_pot, sample)

    def _iter_records(self, path: Path, records: Any, sample: Any) -> Iterator:
        """Items of a CASIA file (`records`: iter_gnt or iter_pot), bad records as errors."""
        from hccr.casia import CasiaFormatError, scan_records

        def failed(i: int, message: str) -> Iterator:
            message = message if message.startswith(str(path)) else f"{path}: {message}"
            yield lambda: _item(path, i, None, error=message)

        try:
            if path.stat().st_size == 0:
                yield from failed(0, "empty file (no records)")
                return
        except OSError as e:
            yield from failed(0, f"cannot read: {e.strerror or e}")
            return
        index, start = 0, 0
        while True:
            try:
                for record in records(path, start):
                    yield lambda i=index, record=record: sample(i, record)
                    index += 1
                return
            except CasiaFormatError as e:
                # A bad record whose size field still frames it (bad width, height or bitmap):
                # report it and go on with the next one, as `hccr-data pack --skip-bad` does.
                following = _next_record(scan_records, path, e.offset)
                if following is None:  # the framing itself is broken: nothing more to read
                    yield from failed(index, f"{e} (rest of file skipped)")
                    return
                yield from failed(index, str(e))
                index, start = index + 1, following
            except (ValueError, OSError) as e:
                yield from failed(index, f"{e} (rest of file skipped)")
                return

    def _iter_lmdb(self, path: Path) -> Iterator:
        # LmdbDataset, as training reads it: numpy samples, no torch (`read`), no augmentation
        import struct

        import lmdb

        from hccr.dataset import LmdbDataset
        from hccr.preprocess import EmptyImageError, normalize
        from hccr.trajectory import draw

        try:
            dataset = LmdbDataset(path)
            dataset.env  # noqa: B018 (opened and checked now: a damaged LMDB is one error line)
            renormalize = dataset.norm != self.norm
            chars = dataset.charset.chars
            if (dataset.trajectory is None) != (self.trajectory is None):
                held = "images" if dataset.trajectory is None else "pen trajectories"
                model = "an online model" if self.trajectory is not None else "an image model"
                raise ValueError(f"{path}: holds {held}, which {model} does not read")
        except (ValueError, OSError, KeyError, TypeError, lmdb.Error) as e:
            message = str(e) if str(e).startswith(str(path)) else f"{path}: cannot open LMDB: {e}"
            yield lambda: _item(path, None, None, error=message)
            return

        def sample(i: int) -> dict:
            try:
                if self.trajectory is not None:  # drawn as the model draws its input
                    points, label, _ = dataset.read_points(i)
                    label_char = chars[label] if 0 <= label < len(chars) else None
                    return _item(path, i, label_char, image=draw(points, self.trajectory))
                image, label, _ = dataset.read(i)
                if renormalize:  # packed with another NormConfig than the model's
                    image = normalize(image, self.norm)
                label_char = chars[label] if 0 <= label < len(chars) else None
            except EmptyImageError:
                return _item(path, i, None, error=f"{path}: sample {i}: empty image")
            except (ValueError, OSError, KeyError, lmdb.Error, struct.error) as e:
                message = str(e) if str(e).startswith(str(path)) else f"{path}: sample {i}: {e}"
                return _item(path, i, None, error=message)
            return _item(path, i, label_char, image=image.copy()[None])

        for i in range(len(dataset)):
            yield lambda i=i: sample(i)


def _next_record(scan_records: Any, path: Path, offset: int) -> int | None:
    """Byte offset of the record after the one at `offset`, or None when its size field does
    not frame it (or it was the last)."""
    from hccr.casia import CasiaFormatError

    offsets = scan_records(path, offset)
    try:
        next(offsets)  # the bad record itself: raises when its size field is what is wrong
        return next(offsets, None)
    except CasiaFormatError:
        return None


def count_items(sources: Sequence[Source]) -> int | None:
    """Items to expect, for the progress bar; None when a .gnt / .pot is among them."""
    from hccr.lmdb_format import read_meta

    total = 0
    for s in sources:
        if s.kind in ("gnt", "pot"):
            return None
        if s.kind == "lmdb":
            try:
                total += int(read_meta(s.path)["num_samples"])
            except Exception:  # reported properly when the source is read
                total += 1
        else:
            total += 1
    return total


def collate(items: list[dict]) -> dict:
    """Keeps per-item fields as lists and stacks the valid images into (N, C, S, S) uint8."""
    images = [it["image"] for it in items if it["image"] is not None]
    batch = {key: [it[key] for it in items] for key in ("source", "index", "label", "error")}
    batch["images"] = np.stack(images) if images else None
    return batch


def in_process(reader: RecognizeReader) -> Iterator[dict]:
    """The reader's batches, read in this process."""
    items: list[dict] = []
    for item in reader.iter_items():
        items.append(item)
        if len(items) == reader.block:
            yield collate(items)
            items = []
    if items:
        yield collate(items)


def loader_batches(reader: RecognizeReader, workers: int) -> Iterator[dict]:
    """The reader's batches, read by `workers` DataLoader processes (torch imported here)."""
    from hccr.commands.recognize_workers import worker_batches

    return worker_batches(reader, workers, collate)
