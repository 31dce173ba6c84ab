"""`pack(sources, out, options)`: CASIA `.gnt` / `.pot` files into a normalised hccr LMDB
(the library behind `hccr-data pack`, data_tools/commands/pack.py).

The main process checks each file's record framing (size fields only), then a pool of workers
parses, normalises and compresses chunks of records while the main process writes them in
order; every record read is written or counted under a skip reason.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
from tqdm import tqdm

from data_tools.render import render_strokes
from hccr.atomic import OutputError, partial_path, write_failure
from hccr.casia import CasiaFormatError, iter_gnt, iter_pot, scan_records
from hccr.charset import Charset
from hccr.lmdb_format import (
    LmdbWriter,
    build_meta,
    encode_points_sample,
    encode_sample,
    prepare_output,
)
from hccr.preprocess import (
    EmptyImageError,
    NormConfig,
    ink_from_white_background,
    normalize,
    warm_up,
)
from hccr.trajectory import TrajectoryConfig, normalize_points
from hccr.trajectory import warm_up as warm_up_trajectory

CASIA_SUFFIXES = (".gnt", ".pot")
CHUNK_RECORDS = 512  # records per work item: big enough to amortise pickling, small for balance
MAX_SKIP_EXAMPLES = 100  # skipped records listed in the metadata (all of them go to --report)


@dataclass(frozen=True)
class PackOptions:
    norm: NormConfig
    charset: Charset
    pen_width: float = 0.035  # .pot pen diameter relative to the character box (matches scans)
    skip_bad: bool = False
    # set: write `.pot` trajectories as normalised points (`--input strokes`), not images
    trajectory: TrajectoryConfig | None = None


@dataclass
class SourceStats:
    """What happened to the records of one source file."""

    writer: int
    records: int = 0
    written: int = 0
    skipped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "writer": self.writer,
            "records": self.records,
            "written": self.written,
            "skipped": dict(self.skipped),
        }


def find_sources(paths: list[str | Path]) -> list[Path]:
    """Files and folders -> sorted CASIA files; folders are searched recursively."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(
                f for f in p.rglob("*") if f.suffix.lower() in CASIA_SUFFIXES and f.is_file()
            )
            if not inside:
                raise FileNotFoundError(f"{p}: no .gnt or .pot files in this folder")
            found.extend(inside)
        elif p.is_file():
            if p.suffix.lower() not in CASIA_SUFFIXES:
                raise ValueError(f"{p}: not a CASIA file (expected .gnt or .pot)")
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return found


def writer_id(path: Path) -> int:
    """CASIA names files by writer (`1001-c.gnt`, `001.pot`): the first number in the name, or -1."""
    m = re.search(r"\d+", path.stem)
    return int(m.group()) if m else -1


def parse_writer_ranges(spec: str) -> set[int]:
    """`1001-1240,1300` -> the set of writer ids."""
    ids: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"bad --writers range {part!r}; expected e.g. 1001-1240,1300")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if hi < lo:
            raise ValueError(f"bad --writers range {part!r}: end before start")
        ids.update(range(lo, hi + 1))
    return ids


@dataclass(frozen=True)
class _Chunk:
    path: Path
    start: int  # byte offset of the first record
    count: int
    writer: int


FRAMING_SKIP = "corrupt framing, rest of file skipped"


def _plan_chunks(
    path: Path, skip_bad: bool, stats: SourceStats, framing: list[dict[str, Any]]
) -> Iterator[_Chunk]:
    """Checks framing and cuts the file into chunks. A framing error ends the file: with
    `skip_bad` the rest is reported as one skip (appended to `framing`), otherwise the error
    propagates."""
    start, count = None, 0
    try:
        for offset in scan_records(path):
            if start is None:
                start = offset
            count += 1
            if count == CHUNK_RECORDS:
                yield _Chunk(path, start, count, stats.writer)
                start, count = None, 0
    except CasiaFormatError as e:
        if not skip_bad:
            raise
        reason = f"{FRAMING_SKIP}: {e.reason}"
        stats.skipped[reason] += 1
        framing.append({"source": str(path), "offset": e.offset, "tag": "", "reason": reason})
    if count:
        yield _Chunk(path, start, count, stats.writer)


_worker_options: PackOptions | None = None


def _init_worker(options: PackOptions) -> None:
    global _worker_options
    _worker_options = options
    # one record is far too small to split across threads: OpenCV's default thread pool only
    # makes the workers wait on each other's cores (measured: ~1.5x slower on 2 cores)
    cv2.setNumThreads(1)


def _pack_chunk(chunk: _Chunk) -> tuple[list[tuple[bytes, int]], list[tuple[int, str, str]]]:
    """Worker: records of one chunk -> (encoded values with labels, skipped (offset, tag, reason))."""
    opts = _worker_options
    is_pot = chunk.path.suffix.lower() == ".pot"
    values: list[tuple[bytes, int]] = []
    skipped: list[tuple[int, str, str]] = []
    reader = iter_pot if is_pot else iter_gnt
    records = reader(chunk.path, chunk.start, chunk.count)
    while True:
        try:
            rec = next(records)
        except StopIteration:
            break
        except CasiaFormatError as e:
            if not opts.skip_bad:
                raise
            skipped.append((e.offset, "", f"bad record: {e.reason}"))
            # framing was checked in the main process, so the next record starts where it said
            records = _resume_after(reader, chunk, e.offset, len(values) + len(skipped))
            continue
        tag = rec.code.hex()
        if rec.char is None:
            skipped.append((rec.offset, tag, "tag code is not a GBK character"))
            continue
        if rec.char not in opts.charset:
            skipped.append((rec.offset, rec.char, f"not in charset {opts.charset.name}"))
            continue
        label = opts.charset.index(rec.char)
        try:
            if opts.trajectory is not None:
                points = normalize_points(rec.strokes, opts.trajectory)
                values.append((encode_points_sample(points, label, chunk.writer), label))
                continue
            ink = (
                render_strokes(rec.strokes, opts.pen_width)
                if is_pot
                else ink_from_white_background(rec.bitmap)
            )
            image = normalize(ink, opts.norm)
        except (EmptyImageError, ValueError) as e:
            if not opts.skip_bad:
                raise CasiaFormatError(chunk.path, rec.offset, f"{rec.char}: {e}") from None
            skipped.append((rec.offset, rec.char, f"bad record: {e}"))
            continue
        values.append((encode_sample(image, label, chunk.writer), label))
    return values, skipped


def _resume_after(reader, chunk: _Chunk, bad_offset: int, done: int):  # type: ignore[no-untyped-def]
    offsets = scan_records(chunk.path, bad_offset)
    next(offsets)  # the bad record itself
    remaining = chunk.count - done
    nxt = next(offsets, None)
    if nxt is None or remaining <= 0:
        return iter(())
    return reader(chunk.path, nxt, remaining)


def seen_chars(paths: list[Path]) -> set[str]:
    chars: set[str] = set()
    for path in paths:
        reader = iter_pot if path.suffix.lower() == ".pot" else iter_gnt
        chars.update(r.char for r in reader(path) if r.char is not None)
    return chars


def pack(
    sources: list[Path],
    out: Path,
    options: PackOptions,
    workers: int = 1,
    overwrite: bool = False,
    report: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Packs `sources` into the LMDB `out`; returns its metadata.

    `report` (JSON lines, one per skipped record) is written atomically too, and only when
    the pack succeeds. One function: the pool, the LMDB writer and the skip report share one
    try/finally, which is what keeps an interrupted pack from leaving anything behind.
    """
    for stale in prepare_output(out, overwrite):  # before any work: a bad target fails at once
        print(
            f"hccr-data pack: note: removed {stale}, left by a run that no longer runs",
            file=sys.stderr,
        )
    stats = {p: SourceStats(writer_id(p)) for p in sources}
    framing: list[dict[str, Any]] = []
    chunks = [c for p in sources for c in _plan_chunks(p, options.skip_bad, stats[p], framing)]
    total = sum(c.count for c in chunks)
    skips = _SkipLog(report)
    for item in framing:
        skips.note(item)
    if options.trajectory is not None:
        bad = [p for p in sources if p.suffix.lower() != ".pot"]
        if bad:
            raise ValueError(f"{bad[0]}: --input strokes needs .pot (online) sources")
    warm_up()  # compiled once here, inherited by the forked workers
    warm_up_trajectory()
    pool = mp.get_context("fork").Pool(workers, _init_worker, (options,)) if workers > 1 else None
    try:
        with LmdbWriter(out, overwrite=overwrite) as writer:
            if pool is None:
                _init_worker(options)
                results = map(_pack_chunk, chunks)
            else:
                results = pool.imap(_pack_chunk, chunks)
            bar = tqdm(
                total=total,
                unit="rec",
                desc=f"pack {out.name}",
                disable=not progress,
                file=sys.stderr,
            )
            for chunk, (values, skipped) in zip(chunks, results, strict=True):
                st = stats[chunk.path]
                st.records += chunk.count
                st.written += len(values)
                for value, label in values:
                    writer.add_encoded(value, label)
                for offset, tag, reason in skipped:
                    st.skipped[reason] += 1
                    skips.note(
                        {"source": str(chunk.path), "offset": offset, "tag": tag, "reason": reason}
                    )
                bar.update(chunk.count)
            bar.close()
            skipped_total = Counter()
            for st in stats.values():
                skipped_total.update(st.skipped)
            meta = build_meta(
                "casia",
                options.charset,
                options.norm,
                sources={str(p): st.to_dict() for p, st in stats.items()},
                writers=(st.writer for st in stats.values()),
                skipped=skipped_total,
                trajectory=options.trajectory,
                pen_width=options.pen_width,
                skipped_examples=skips.examples,
            )
            written = _accounted(out, stats, skipped_total, meta["records"])
            skips.close()  # a full disk shows here, before the LMDB is in place
            writer.finish(meta)
            skips.publish()
    finally:
        if pool is not None:
            pool.terminate()
        skips.discard()
    meta["num_samples"] = written
    return meta


class _SkipLog:
    """The skipped records: the first `MAX_SKIP_EXAMPLES` kept for the metadata, and every one
    written to `report` (JSON lines) when given, under a partial name until `publish()`."""

    def __init__(self, report: Path | None) -> None:
        self.report = report
        self.examples: list[dict[str, Any]] = []
        self._tmp = partial_path(report) if report else None
        try:
            self._file = open(self._tmp, "w", encoding="utf-8") if self._tmp else None  # noqa: SIM115
        except OSError as e:
            raise OutputError(report, e.strerror or str(e)) from None

    def note(self, item: dict[str, Any]) -> None:
        if len(self.examples) < MAX_SKIP_EXAMPLES:
            self.examples.append(item)
        if self._file:
            try:
                self._file.write(json.dumps(item, ensure_ascii=False) + "\n")
            except OSError as e:
                raise OutputError(self.report, write_failure(self.report.parent, e)) from None

    def close(self) -> None:
        if self._file:
            try:
                self._file.close()
            except OSError as e:
                raise OutputError(self.report, write_failure(self.report.parent, e)) from None

    def publish(self) -> None:
        if self._tmp:
            os.replace(self._tmp, self.report)

    def discard(self) -> None:
        """Closes the file and removes the partial one (gone once published)."""
        if self._file:
            self._file.close()
            self._tmp.unlink(missing_ok=True)


def _accounted(out: Path, stats: dict[Path, SourceStats], skipped: Counter, records: int) -> int:
    """The samples written; raises unless every record read was written or skipped with a
    reason, or when nothing was written."""
    written = sum(st.written for st in stats.values())
    counted = written + sum(skipped.values())
    framed = sum(n for r, n in skipped.items() if r.startswith(FRAMING_SKIP))
    if counted - framed != records:
        raise RuntimeError(f"{out}: {records} records read but {counted - framed} accounted for")
    if written == 0:
        raise ValueError(f"{out}: nothing to pack: {_why_empty(stats)}")
    return written


def _why_empty(stats: dict[Path, SourceStats]) -> str:
    """A truthful reason for a pack with no sample: empty files, corrupt ones, or the skips."""
    files = []
    for path, st in stats.items():
        if st.records == 0:  # nothing framed: the file is empty, or corrupt from its start
            files.append(
                f"{path} is empty" if not st.skipped else f"{path}: {next(iter(st.skipped))}"
            )
    parts = files[:3] + ([f"{len(files) - 3} more such file(s)"] if len(files) > 3 else [])
    records = sum(st.records for st in stats.values())
    if records:
        reasons: Counter = Counter()
        for st in stats.values():
            reasons.update(st.skipped)
        top = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common(3))
        parts.append(f"{records} record(s) read, all skipped ({top})")
    return "; ".join(parts)
