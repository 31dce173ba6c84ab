"""Recognise characters in image files, folders, .gnt / .pot files and .lmdb folders.

An online bundle (`--model gb1-online`) reads the pen trajectories of `.pot` files and
trajectory LMDBs (an image given to it is an error line); an image bundle reads everything,
`.pot` strokes inked first.

Each character gets one output line (table, csv or jsonl), streamed as batches finish, with a
progress bar on stderr. `.gnt` and `.lmdb` samples carry their label, so accuracy is printed at
the end. An unreadable, non-image or empty file, or a corrupt `.gnt` record, gets a line on
stderr naming the path (and byte offset); the run goes on (in a `.gnt`, with the next record when
the bad one's size field still frames it) and exits 1 with a count of failures. `jsonl` escapes
file names that are not UTF-8 (`\\udcff`), so every line parses.
Folders are searched recursively for images, `.gnt` / `.pot` files and `.lmdb` folders.

  hccr recognize scans/ --format csv > out.csv
  hccr recognize HWDB1.1tst_gnt/*.gnt --model gb1-teacher --topk 5
  hccr recognize OLHWDB1.1tst_pot/*.pot --model gb1-online
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from hccr.commands.recognize_reader import (
    RecognizeReader,
    collect_sources,
    count_items,
    in_process,
    loader_batches,
)
from hccr.commands.result_writer import FORMATS, ResultWriter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (recursive), .gnt / .pot files, .lmdb folders")  # fmt: skip
    parser.add_argument("--model", default=None,
                        help="bundle name in models/, bundle folder or run folder (default: the shipped student)")  # fmt: skip
    parser.add_argument("--topk", type=int, default=5, help="candidates per character (default: 5)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default=None,
                        help="output format (default: table on a terminal, jsonl otherwise)")  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=256, help="characters per batch (default: 256)"
    )
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader worker processes for reading and normalising (default: 2); image files that fit one batch are read in this process, without torch")  # fmt: skip
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torchscript", "torch"),
                        help="auto: the bundle's ONNX / TorchScript export when present, else the float model")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0,
                        help="model threads in the main process (default: 0, all cores; idle ones sleep, so the workers still get CPU)")  # fmt: skip
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")  # fmt: skip
    parser.add_argument("--profile", default=None, metavar="PROFILE",
                        help="apply a writer profile made by `hccr adapt` for this model")  # fmt: skip


def _recognized(
    loader: Iterator[dict], recognizer: Any, topk: int
) -> Iterator[tuple[dict, list[list[Any]]]]:
    """(batch, its top-k lists) in order; the model runs on batch n+1 while the caller writes
    batch n (the runtime releases the GIL), so output and reading overlap the inference."""

    def infer(images: np.ndarray | None) -> list[list[Any]]:
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
    recognizer = Recognizer.from_bundle(
        args.model, backend=args.backend, num_threads=args.threads, profile=args.profile
    )
    if args.threads and "torch" in sys.modules:  # loaded when the float model runs
        sys.modules["torch"].set_num_threads(args.threads)
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
    reader = RecognizeReader(sources, recognizer.norm, args.batch_size, recognizer.trajectory)
    loader = loader_batches(reader, workers) if workers else in_process(reader)
    show = err.isatty() if args.progress is None else args.progress
    total = count_items(sources) if show else None
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
    """Runs `hccr recognize` with argv (for tests and scripts); errors propagate as exceptions
    (the `hccr` CLI turns them into one line)."""
    parser = argparse.ArgumentParser(prog="hccr recognize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_arguments(parser)
    return run(parser.parse_args(argv))
