"""Recognise characters in image files, folders, .gnt files and .lmdb folders.

Each character gets one output line (table, csv or jsonl), streamed as batches finish, with a
progress bar on stderr. `.gnt` and `.lmdb` samples carry their label, so accuracy is printed at
the end. An unreadable, non-image or empty file, or a corrupt `.gnt` record, gets a line on
stderr naming the path (and byte offset); the run goes on (in a `.gnt`, with the next record when
the bad one's size field still frames it) and exits 1 with a count of failures. `jsonl` escapes
file names that are not UTF-8 (`\\udcff`), so every line parses.
Folders are searched recursively for images, `.gnt` files and `.lmdb` folders.

  hccr recognize scans/ --format csv > out.csv
  hccr recognize HWDB1.1tst_gnt/*.gnt --model gb1-teacher --topk 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hccr.commands.result_writer import FORMATS, ResultWriter

IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
    ".pnm",
)  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One input: an image file, a .gnt file or an .lmdb folder."""

    kind: str  # "image" | "gnt" | "lmdb"
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
                    if suffix == ".gnt":
                        sources.append(Source("gnt", root_path / name))
                    elif suffix in IMAGE_EXTENSIONS:
                        sources.append(Source("image", root_path / name))
                    else:
                        skipped += 1
            if skipped:
                notes.append(
                    f"{path}: skipped {skipped} file(s) that are not images "
                    f"({', '.join(IMAGE_EXTENSIONS)}), .gnt files or .lmdb folders"
                )
        elif path.is_file():
            kind = "gnt" if path.suffix.lower() == ".gnt" else "image"
            sources.append(Source(kind, path))
        else:
            errors.append(f"{path}: no such file or folder")
    return sources, notes, errors


def _item(source: Path, index: int | None, label: str | None, image=None, error=None) -> dict:
    return {"source": str(source), "index": index, "label": label, "image": image, "error": error}


class RecognizeDataset(IterableDataset):
    """Streams normalised samples (or error records) from sources, in input order.

    Items are handed to workers in blocks of `block` consecutive items, block k to worker
    k % num_workers. With DataLoader(batch_size=block) each worker's batches are then exactly
    its blocks, and the loader's round-robin over workers yields them in input order.
    Every item yields exactly one record (a sample or an error), which keeps the blocks aligned.
    """

    def __init__(self, sources: Sequence[Source], norm: Any, block: int) -> None:
        self.sources = list(sources)
        self.norm = norm
        self.block = block

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        counter = 0
        for source in self.sources:
            # every worker walks every source so that all agree on item numbering
            for make in getattr(self, f"_iter_{source.kind}")(source.path):
                if (counter // self.block) % num_workers == worker:
                    yield make()
                counter += 1

    def _iter_image(self, path: Path) -> Iterator:
        yield lambda: self._load_image(path)

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
        return _item(path, None, None, image=torch.from_numpy(image).unsqueeze(0))

    def _iter_gnt(self, path: Path) -> Iterator:
        from hccr.casia import CasiaFormatError, iter_gnt, scan_records
        from hccr.preprocess import EmptyImageError, ink_from_white_background, normalize

        def sample(i: int, record) -> dict:
            try:
                image = normalize(ink_from_white_background(record.bitmap), self.norm)
            except EmptyImageError:
                where = f"{path}: record {i} at byte {record.offset}"
                return _item(path, i, record.char, error=f"{where}: empty bitmap (no ink)")
            return _item(path, i, record.char, image=torch.from_numpy(image).unsqueeze(0))

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
                for record in iter_gnt(path, start):
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
        # The format module, not LmdbDataset: that one carries training augmentation (torchvision,
        # seconds to import in every worker) and recognition needs none of it.
        import struct

        import lmdb

        from hccr.lmdb_format import decode_sample, open_lmdb, read_meta, sample_key
        from hccr.preprocess import EmptyImageError, NormConfig, normalize

        try:
            env = open_lmdb(path)  # once per worker: open_lmdb resolves and stats the path
            meta = read_meta(path)
            count = int(meta["num_samples"])
            size = int(meta["image_size"])
            renormalize = NormConfig.from_dict(meta["norm"]) != self.norm
            chars = list(meta["charset"])
        except (ValueError, OSError, KeyError, TypeError, lmdb.Error) as e:
            message = str(e) if str(e).startswith(str(path)) else f"{path}: cannot open LMDB: {e}"
            yield lambda: _item(path, None, None, error=message)
            return

        def sample(i: int) -> dict:
            try:
                with env.begin(buffers=True) as txn:
                    value = txn.get(sample_key(i))
                    if value is None:
                        raise KeyError(f"sample {i} is missing")
                    image, label, _ = decode_sample(bytes(value), size)
                if renormalize:  # packed with another NormConfig than the model's
                    image = normalize(image, self.norm)
                label_char = chars[label] if 0 <= label < len(chars) else None
            except EmptyImageError:
                return _item(path, i, None, error=f"{path}: sample {i}: empty image")
            except (ValueError, OSError, KeyError, lmdb.Error, struct.error) as e:
                return _item(path, i, None, error=f"{path}: sample {i}: {e}")
            return _item(path, i, label_char, image=torch.from_numpy(image.copy()).unsqueeze(0))

        for i in range(count):
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


def _count_items(sources: Sequence[Source]) -> int | None:
    """Items to expect, for the progress bar; None when a .gnt is among them (unknown count)."""
    from hccr.lmdb_format import read_meta

    total = 0
    for s in sources:
        if s.kind == "gnt":
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
    """Keeps per-item fields as lists and stacks the valid images into (N, 1, S, S) uint8."""
    images = [it["image"] for it in items if it["image"] is not None]
    batch = {key: [it[key] for it in items] for key in ("source", "index", "label", "error")}
    batch["images"] = torch.stack(images) if images else None
    return batch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (recursive), .gnt files, .lmdb folders")  # fmt: skip
    parser.add_argument("--model", default=None,
                        help="bundle name in models/, bundle folder or run folder (default: the shipped student)")  # fmt: skip
    parser.add_argument("--topk", type=int, default=5, help="candidates per character (default: 5)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default=None,
                        help="output format (default: table on a terminal, jsonl otherwise)")  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=256, help="characters per batch (default: 256)"
    )
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader worker processes for reading and normalising (default: 2)")  # fmt: skip
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torchscript", "torch"),
                        help="auto: the bundle's ONNX / TorchScript export when present, else the float model")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0,
                        help="model threads in the main process (default: 0, all cores; idle ones sleep, so the workers still get CPU)")  # fmt: skip
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")  # fmt: skip
    parser.add_argument("--profile", default=None, metavar="PROFILE",
                        help="apply a writer profile made by `hccr adapt` for this model")  # fmt: skip


def _recognized(
    loader: DataLoader, recognizer: Any, topk: int
) -> Iterator[tuple[dict, list[list[Any]]]]:
    """(batch, its top-k lists) in order; the model runs on batch n+1 while the caller writes
    batch n (the runtime releases the GIL), so output and reading overlap the inference."""

    def infer(images: torch.Tensor | None) -> list[list[Any]]:
        return recognizer.recognize_prepared(images, topk) if images is not None else []

    with ThreadPoolExecutor(1) as pool:
        pending = None
        for batch in loader:
            job = pool.submit(infer, batch["images"])
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (batch, job)
        if pending is not None:
            yield pending[0], pending[1].result()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hccr.recognizer import Recognizer

    if args.topk < 1:
        raise ValueError(f"--topk must be at least 1, got {args.topk}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    recognizer = Recognizer.from_bundle(
        args.model, backend=args.backend, num_threads=args.threads, profile=args.profile
    )
    sources, notes, failures_before = collect_sources(args.inputs)
    err = sys.stderr
    for line in notes:
        print(f"hccr recognize: note: {line}", file=err)
    failures = 0
    for line in failures_before:
        print(f"hccr recognize: {line}", file=err)
        failures += 1

    out = sys.stdout
    fmt = args.fmt or ("table" if out.isatty() else "jsonl")
    writer = ResultWriter(out, fmt, args.topk, max((len(str(s.path)) for s in sources), default=6))
    # Worker start-up costs more than it saves on a handful of images.
    small = all(s.kind == "image" for s in sources) and len(sources) <= args.batch_size
    workers = 0 if small else max(args.workers, 0)
    dataset = RecognizeDataset(sources, recognizer.norm, args.batch_size)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=workers,
                        collate_fn=collate, persistent_workers=False)  # fmt: skip
    show = err.isatty() if args.progress is None else args.progress
    total = _count_items(sources) if show else None
    bar = tqdm(total=total, unit="char", file=err, disable=not show, dynamic_ncols=True)
    done = labelled = outside = correct1 = correctk = 0
    start = time.perf_counter()
    try:
        for batch, results in _recognized(loader, recognizer, args.topk):
            results = iter(results)
            for source, index, label, error in zip(
                batch["source"], batch["index"], batch["label"], batch["error"], strict=True
            ):
                if error is not None:
                    failures += 1
                    bar.write(f"hccr recognize: {error}", file=err)
                    continue
                top = next(results)
                writer.write(source, index, label, top)
                done += 1
                if label is not None and label not in recognizer.charset:
                    outside += 1  # the model cannot answer it: not scored
                elif label is not None:
                    labelled += 1
                    correct1 += top[0].char == label
                    correctk += any(c.char == label for c in top)
            writer.flush()
            bar.update(len(batch["source"]))
    except BrokenPipeError:  # `hccr recognize ... | head`: the reader is gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    rate = done / seconds if seconds > 0 else 0.0
    print(
        f"hccr recognize: {done} character(s) in {seconds:.1f} s ({rate:.0f}/s), "
        f"model {recognizer.name} ({recognizer.backend})"
        + (f", writer profile {args.profile}" if args.profile else ""),
        file=err,
    )
    if labelled:
        print(
            f"hccr recognize: accuracy on {labelled} labelled: top-1 {100 * correct1 / labelled:.2f}% "
            f"({correct1}/{labelled}), top-{args.topk} {100 * correctk / labelled:.2f}% "
            f"({correctk}/{labelled})",
            file=err,
        )
    if outside:
        print(
            f"hccr recognize: note: {outside} labelled character(s) outside the model's charset "
            f"({len(recognizer.charset)} classes) were not scored",
            file=err,
        )
    if failures:
        print(f"hccr recognize: {failures} failure(s); see the lines above", file=err)
        return 1
    if not done:
        print("hccr recognize: no characters found in the inputs", file=err)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `hccr recognize` with argv (for tests and scripts)."""
    from hccr.cli import main as cli_main

    return cli_main(["recognize", *(argv or [])])
