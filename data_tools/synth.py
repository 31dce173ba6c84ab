"""`write_synth` / `generate`: synthetic handwriting, N samples per class, from a pool of
workers into an LMDB (and a CASIA .gnt), deterministic for a seed whatever the number of workers
(the library behind `hccr-data synth`, data_tools/commands/synth.py; the samples themselves are
drawn by `data_tools.sampler`)."""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data_tools import styles
from data_tools.fonts import (
    HOLDOUT_FAMILIES,
    FontFace,
    GlyphFont,
)
from data_tools.sampler import (
    SampleMaker,
    SynthConfig,
    SynthError,
    parse_styles,
    sample_rng,
    usable_faces,
    writer_id,
)
from data_tools.strokes import load_medians
from hccr.charset import Charset
from hccr.preprocess import INK_THRESHOLD, warm_up
from hccr.trajectory import warm_up as warm_up_trajectory

__all__ = [
    "SampleMaker",
    "SynthConfig",
    "SynthError",
    "generate",
    "parse_styles",
    "sample_rng",
    "write_synth",
]

CHUNK = 32  # samples of one class per work item: fixed, so output is independent of --workers


# ----- the pool -------------------------------------------------------------------------------

_MAKER: SampleMaker | None = None


def _init_worker(faces: list[FontFace], cfg: SynthConfig) -> None:
    global _MAKER
    cv2.setNumThreads(1)  # one process per core; cv2's own threads would fight them
    _MAKER = SampleMaker(faces, cfg)


def _run_chunk(item: tuple[int, str, int, int, bool]) -> dict:
    from hccr.lmdb_format import encode_points_sample, encode_sample

    class_index, ch, start, stop, want_gnt = item
    maker = _MAKER
    values, gnt, style_counts, writers = [], [], Counter(), set()
    for s in range(start, stop):
        rng = sample_rng(maker.cfg.seed, maker.cfg.split, class_index, s)
        if maker.cfg.trajectory is not None:  # a pen trajectory: points, no ink
            writer = writer_id("strokes", -1)
            writers.add(writer)
            points = maker.make_points(ch, rng)
            values.append(encode_points_sample(points, class_index, writer))
            style_counts["strokes"] += 1
            continue
        image, ink, style, face = maker.make_normalized(ch, rng)
        writer = writer_id(style, face)
        writers.add(writer)
        values.append(encode_sample(image, class_index, writer))
        style_counts[style] += 1
        if want_gnt:
            gnt.append(_gnt_bitmap(ink))
    missing = maker.missing if start == 0 else []
    return {
        "label": class_index,
        "values": values,
        "gnt": gnt,
        "styles": style_counts,
        "missing": missing,
        "writers": writers,
    }


def _gnt_bitmap(ink: np.ndarray) -> np.ndarray:
    # Like a CASIA scan: cropped to the character plus a small border, dark ink on white.
    ys, xs = np.nonzero(ink > INK_THRESHOLD)
    crop = ink[max(0, ys.min() - 2) : ys.max() + 3, max(0, xs.min() - 2) : xs.max() + 3]
    return 255 - crop


def iter_chunks(
    charset: Charset, per_char: int, want_gnt: bool
) -> Iterator[tuple[int, str, int, int, bool]]:
    for i, ch in enumerate(charset):
        for start in range(0, per_char, CHUNK):
            yield i, ch, start, min(per_char, start + CHUNK), want_gnt


def generate(
    charset: Charset,
    faces: Sequence[FontFace],
    cfg: SynthConfig,
    workers: int = 1,
    want_gnt: bool = False,
) -> Iterator[dict]:
    """Yields chunk results in class order (see `_run_chunk`), computed by `workers` processes."""
    items = iter_chunks(charset, cfg.per_char, want_gnt)
    if workers <= 1:
        _init_worker(list(faces), cfg)
        yield from map(_run_chunk, items)
        return
    warm_up()  # the normalisation's compiled passes, inherited by forked workers
    warm_up_trajectory()
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(list(faces), cfg)) as pool:
        # a class's chunks go to one worker together: each worker sets a class up (its glyphs
        # in every font) once, not once per chunk (the order of results is unchanged)
        yield from pool.imap(_run_chunk, items, chunksize=max(1, -(-cfg.per_char // CHUNK)))


def write_synth(
    out: Path | None,
    charset: Charset,
    faces: Sequence[FontFace],
    cfg: SynthConfig,
    workers: int = 1,
    gnt_path: Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generates `cfg.per_char` samples per class into `out` (LMDB) and/or `gnt_path`.

    Returns the summary that also goes into the LMDB metadata under `synth`. One loop feeds the
    LMDB, the .gnt and the counts from the same stream of chunks, so it stays one function.
    """
    from hccr.lmdb_format import LmdbWriter, build_meta

    faces = usable_faces(faces, cfg)
    _check_coverable(charset, faces, cfg)
    if cfg.trajectory is not None and gnt_path is not None:
        raise SynthError("--gnt writes images: it cannot go with --input strokes")
    total = len(charset) * cfg.per_char
    style_counts: Counter = Counter()
    missing: dict[str, Counter] = defaultdict(Counter)
    writer_ids: set[int] = set()
    gnt = _GntStream(gnt_path) if gnt_path is not None else None
    writer = LmdbWriter(out, overwrite=overwrite) if out is not None else None
    for stale in writer.stale_removed if writer is not None else ():
        print(
            f"hccr-data synth: note: removed {stale}, left by a run that no longer runs",
            file=sys.stderr,
        )
    try:
        bar = tqdm(total=total, unit="img", desc="synth", disable=not progress, smoothing=0.05)
        for chunk in generate(charset, faces, cfg, workers, want_gnt=gnt_path is not None):
            if writer is not None:
                for value in chunk["values"]:
                    writer.add_encoded(value, chunk["label"])
            if gnt is not None:
                gnt.put(charset.char(chunk["label"]), chunk["gnt"])
            style_counts.update(chunk["styles"])
            for name, reason in chunk["missing"]:
                missing[name][reason] += 1
            writer_ids.update(chunk["writers"])
            bar.update(len(chunk["values"]))
        bar.close()
        summary = _summary(cfg, faces, style_counts, missing)
        if gnt is not None:
            gnt.close()
        if writer is not None:
            # same shape as pack's per-file stats; synth never skips a sample
            source = {"writer": -1, "records": total, "written": total, "skipped": {}}
            writer.finish(
                build_meta(
                    "synth",
                    charset,
                    cfg.norm,
                    sources={f"synth:{cfg.split}:seed{cfg.seed}": source},
                    writers=writer_ids,
                    trajectory=cfg.trajectory,
                    synth=summary,
                )
            )
        return summary
    except BaseException:
        if writer is not None:
            writer.abort()
        if gnt is not None:
            gnt.abort()
        raise


def _summary(
    cfg: SynthConfig,
    faces: Sequence[FontFace],
    style_counts: Counter,
    missing: dict[str, Counter],
) -> dict:
    """What a synth run made: settings, samples per style, fonts and what each could not draw."""
    return {
        "generator": "hccr-data synth",
        "seed": cfg.seed,
        "split": cfg.split,
        "per_char": cfg.per_char,
        "styles": cfg.styles,
        "features": list(cfg.features),
        "style_counts": dict(style_counts),
        "fonts": [f.name for f in faces],
        "holdout_font_families": list(HOLDOUT_FAMILIES),
        "fonts_detail": [f.describe() for f in faces],
        "font_missing_chars": {f.name: sum(missing[f.name].values()) for f in faces},
        # characters each face could not draw, by reason (fonts.SKIP_REASONS): skipped
        "font_skipped": {f.name: dict(missing[f.name]) for f in faces if missing[f.name]},
        "writer_ids": "style * 1000 + font index in `fonts` (999: stroke data); "
        + ", ".join(f"{i}={s}" for i, s in enumerate(styles.STYLES)),
    }


class _GntStream:
    """A CASIA .gnt file written by a background thread while the samples are made; an error
    in the thread is raised by `close()`, in the main thread."""

    def __init__(self, path: Path) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=64)
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._write, args=(path,), daemon=True)
        self._thread.start()

    def _write(self, path: Path) -> None:
        from hccr.casia import write_gnt

        try:
            write_gnt(path, iter(self._queue.get, None))
        except BaseException as e:  # re-raised in the main thread
            self._errors.append(e)
            while self._queue.get() is not None:  # drain so the producer never blocks
                pass

    def put(self, ch: str, bitmaps: Sequence[np.ndarray]) -> None:
        for bitmap in bitmaps:
            self._queue.put((ch, bitmap))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._errors:
            raise self._errors[0]

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)


def _check_coverable(charset: Charset, faces: Sequence[FontFace], cfg: SynthConfig) -> None:
    medians = load_medians()
    needs_font = [ch for ch in charset if ch not in medians or "strokes" not in cfg.styles]
    if not needs_font:
        return
    if not faces or not {"font", "skeleton"} & set(cfg.styles):
        bad = "".join(needs_font[:20])
        raise SynthError(
            f"{len(needs_font)} characters have no stroke data and no font style is enabled: {bad}"
        )
    fonts = [GlyphFont(f, size=32) for f in faces]
    bad = [ch for ch in needs_font if all(f.render(ch) is None for f in fonts)]
    if bad:
        raise SynthError(
            f"{len(bad)} characters have no stroke data and no installed font has them: {''.join(bad[:20])}"
        )
