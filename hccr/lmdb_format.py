"""The LMDB layout shared by `hccr-data pack`, `hccr-data synth` and `LmdbDataset`.

Keys are zero-padded sample indices (`000000000`, ...), written in order with `append=True`.
A value is `<label int32><writer int32>` followed by the zlib-compressed (S, S) uint8 image
(or, in a trajectory LMDB, the normalised pen points: `encode_points_sample`):
a raw 64x64 value is 4,096 bytes and costs two 4 KiB overflow pages, a compressed one about
half a page, and zlib decodes it in microseconds (PNG takes ~13x longer). The streams are
standard zlib, made and read with zlib-ng (`zlib-ng`): at level 1 it makes a 64x64 sample ~3.9x
faster than the system zlib and reads it ~2.5x faster, for streams ~11% larger (bench/codec.py). One JSON record under `__meta__` says what the database holds.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import lmdb
import numpy as np
from zlib_ng import zlib_ng

from hccr import __version__
from hccr.atomic import OutputError, partial_path, remove_stale_partials, write_failure

if TYPE_CHECKING:
    from hccr.charset import Charset
    from hccr.preprocess import NormConfig
    from hccr.trajectory import TrajectoryConfig

FORMAT_VERSION = 1
META_KEY = b"__meta__"
COMMIT_EVERY = 10_000  # records per write transaction
_INITIAL_MAP_SIZE = 256 << 20  # grown on MDB_MAP_FULL; a 1 TiB default breaks on some filesystems
_VALUE_HEADER = struct.Struct("<ii")  # label, writer
REQUIRED_META = ("charset", "num_classes", "image_size", "norm", "sources")
_LMDB_FILES = frozenset({"data.mdb", "lock.mdb"})  # all an hccr LMDB folder may hold


def build_meta(
    kind: str,
    charset: Charset,
    norm: NormConfig,
    sources: dict[str, dict[str, Any]],
    writers: Iterable[int],
    skipped: dict[str, int] | None = None,
    trajectory: TrajectoryConfig | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The `__meta__` record of a database made by `kind` ("casia", "synth"): the charset, the
    normalisation, per-source counts (`{"writer", "records", "written", "skipped"}` each) and
    their totals; `extra` adds the maker's own fields. `LmdbWriter.finish` adds the sample count,
    format and tool versions. With `trajectory` the samples are normalised points
    (`encode_points_sample`), drawn into maps by the reader, and `input` says "strokes"."""
    kind_fields: dict[str, Any] = {"input": "image"}
    if trajectory is not None:
        kind_fields = {"input": "strokes", "trajectory": trajectory.to_dict()}
    return {
        "kind": kind,
        "charset_name": charset.name,
        "charset": list(charset.chars),
        "num_classes": len(charset),
        "image_size": norm.size,
        "norm": norm.to_dict(),
        "ink": "bright",  # ink is 255 on a 0 background, as `hccr.preprocess` makes it
        "sources": sources,
        "records": sum(s["records"] for s in sources.values()),
        "skipped": dict(skipped or {}),
        "writers": sorted(set(writers)),
        **kind_fields,
        **extra,
    }


class LmdbFormatError(ValueError):
    """A folder that is not an hccr LMDB, or one whose metadata is incomplete."""


def prepare_output(out: str | Path, overwrite: bool = False) -> list[Path]:
    """`check_output`, then removes what killed runs left of `out`.

    Returns:
        Stale partial outputs of `out` removed (see `hccr.atomic.remove_stale_partials`).
    """
    check_output(out, overwrite)
    return remove_stale_partials(Path(out))


def check_output(out: str | Path, overwrite: bool = False) -> None:
    """Checks that the LMDB `out` may be written; call it before any work.

    `--overwrite` replaces only an LMDB made by this tool (its `__meta__` record readable, no
    other files in the folder): anything else there is the user's and is refused.
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
        _check_replaceable(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out}: parent folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise PermissionError(f"{out}: folder {out.parent} is not writable")


def _check_replaceable(out: Path) -> None:
    refuse = f"{out}: --overwrite replaces only an LMDB made by hccr-data, and this"
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"{refuse} is not a folder; not replaced")
    others = sorted(p.name for p in out.iterdir() if p.name not in _LMDB_FILES)
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise FileExistsError(f"{refuse} folder holds other files ({shown}); not replaced")
    try:
        with open_lmdb(out).begin() as txn:
            made_here = txn.get(META_KEY) is not None
    except (LmdbFormatError, lmdb.Error) as e:
        raise FileExistsError(f"{refuse} is not one ({e}); not replaced") from None
    if not made_here:
        raise FileExistsError(f"{refuse} LMDB has no {META_KEY.decode()} record; not replaced")


def sample_key(index: int) -> bytes:
    return b"%09d" % index


def encode_sample(image: np.ndarray, label: int, writer: int = -1) -> bytes:
    """(S, S) uint8 image + label + writer id -> the stored value."""
    return _VALUE_HEADER.pack(label, writer) + zlib_ng.compress(
        np.ascontiguousarray(image).tobytes(), 1
    )


def decode_sample(value: bytes, image_size: int) -> tuple[np.ndarray, int, int]:
    """The stored value -> ((S, S) uint8 image, label, writer id).

    Raises:
        LmdbFormatError: the image is not a zlib stream (whichever codec read it).
    """
    label, writer = _VALUE_HEADER.unpack_from(value)
    try:
        pixels = zlib_ng.decompress(memoryview(value)[_VALUE_HEADER.size :])
    except zlib_ng.error as e:  # not a zlib.error subclass: callers should not need to know
        raise LmdbFormatError(f"sample value is not a zlib stream ({e})") from None
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(image_size, image_size)
    return image, label, writer


# Trajectory samples (LMDBs whose metadata says "input": "strokes") store the normalised points:
# int16 stroke count, int16 point count per stroke, then int16 (x, y) pairs in 1/16 map pixels.
_POINT_SCALE = 16


def encode_points_sample(strokes: list[np.ndarray], label: int, writer: int = -1) -> bytes:
    """Normalised points (`hccr.trajectory.normalize_points`) + label + writer -> stored value."""
    counts = np.array([len(strokes), *(len(s) for s in strokes)], "<i2")
    xy = np.concatenate(strokes) if strokes else np.zeros((0, 2))
    fixed = np.clip(np.round(xy * _POINT_SCALE), -32768, 32767).astype("<i2")
    return _VALUE_HEADER.pack(label, writer) + zlib_ng.compress(
        counts.tobytes() + fixed.tobytes(), 1
    )


def decode_points_sample(value: bytes) -> tuple[list[np.ndarray], int, int]:
    """The stored value -> (float32 (N, 2) point arrays, label, writer id).

    Raises:
        LmdbFormatError: not a zlib stream, or counts that do not fit the points.
    """
    label, writer = _VALUE_HEADER.unpack_from(value)
    try:
        raw = zlib_ng.decompress(memoryview(value)[_VALUE_HEADER.size :])
    except zlib_ng.error as e:
        raise LmdbFormatError(f"sample value is not a zlib stream ({e})") from None
    data = np.frombuffer(raw, "<i2")
    n = int(data[0]) if len(data) else -1
    counts = data[1 : n + 1].astype(np.int64)
    xy = data[n + 1 :]
    if n < 0 or len(counts) != n or 2 * int(counts.sum()) != len(xy):
        raise LmdbFormatError("trajectory sample: point counts do not fit the points")
    points = xy.reshape(-1, 2).astype(np.float32) / np.float32(_POINT_SCALE)
    return np.split(points, np.cumsum(counts)[:-1]), label, writer


class LmdbWriter:
    """Writes an hccr LMDB atomically: `out` appears complete at `finish()` or not at all.

    Use as a context manager; an exception (Ctrl-C included) inside the block removes the
    temporary database.
    """

    def __init__(self, out: str | Path, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self.stale_removed = prepare_output(self.out, overwrite)  # for the caller to report
        self.tmp = partial_path(self.out)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._map_size = _INITIAL_MAP_SIZE
        try:
            self._env: lmdb.Environment | None = lmdb.open(
                str(self.tmp),
                map_size=self._map_size,
                subdir=True,
                meminit=False,
                map_async=True,
                sync=False,
            )
        except (lmdb.Error, OSError) as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise OSError(f"{self.out}: cannot write the database here ({e})") from None
        self._pending: list[tuple[bytes, bytes]] = []
        self.num_samples = 0
        self.label_counts: dict[int, int] = {}

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()

    def add(self, image: np.ndarray, label: int, writer: int = -1) -> None:
        """Queues one normalised sample."""
        self.add_encoded(encode_sample(image, label, writer), label)

    def add_encoded(self, value: bytes, label: int) -> None:
        """Queues a value made by `encode_sample` (e.g. in a worker process)."""
        self._pending.append((sample_key(self.num_samples), value))
        self.num_samples += 1
        self.label_counts[label] = self.label_counts.get(label, 0) + 1
        if len(self._pending) >= COMMIT_EVERY:
            self._flush()

    def _flush(self, extra: tuple[bytes, bytes] | None = None) -> None:
        items = self._pending + ([extra] if extra else [])
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in items:
                        txn.put(key, value, append=True)
                break
            except lmdb.MapFullError:
                self._map_size *= 2
                self._write_step(self._env.set_mapsize, self._map_size)
            except (lmdb.Error, OSError) as e:  # disk full, I/O error: one line naming `out`
                raise self._write_error(e) from None
        self._pending = []

    def _write_error(self, error: BaseException) -> OutputError:
        # the reason is read before the caller's abort() frees the space
        return OutputError(self.out, write_failure(self.out.parent, error))

    def _write_step(self, step: Any, *args: Any) -> Any:
        try:
            return step(*args)
        except (lmdb.Error, OSError) as e:
            raise self._write_error(e) from None

    def finish(self, meta: dict[str, Any]) -> Path:
        """Writes the metadata record, compacts, and renames the database into place."""
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise ValueError(f"{self.out}: metadata lacks {', '.join(missing)}")
        meta = {
            **meta,
            "num_samples": self.num_samples,
            "format_version": FORMAT_VERSION,
            "tool_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._flush(extra=(META_KEY, json.dumps(meta, ensure_ascii=False).encode()))
        compact = self.tmp.with_name(self.tmp.name + "-compact")
        shutil.rmtree(compact, ignore_errors=True)
        try:
            compact.mkdir()
            self._write_step(self._env.sync, True)
            self._write_step(self._env.copy, str(compact), True)
        except BaseException:
            shutil.rmtree(compact, ignore_errors=True)
            raise
        self._env.close()
        self._env = None
        shutil.rmtree(self.tmp)
        if self.out.exists() or self.out.is_symlink():  # checked at the start; made since?
            if not self.overwrite:
                raise FileExistsError(f"{self.out}: appeared while this database was written")
            _check_replaceable(self.out)
            shutil.rmtree(self.out)
        self._write_step(os.rename, compact, self.out)
        return self.out

    def abort(self) -> None:
        """Discards everything written so far."""
        if self._env is not None:
            self._env.close()
            self._env = None
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.tmp.with_name(self.tmp.name + "-compact"), ignore_errors=True)


_open_envs: dict[str, tuple[int, int, lmdb.Environment]] = {}  # realpath -> (pid, inode, env)
_prefetched: set[tuple[str, int]] = set()  # (realpath, inode) of each database read through


def open_lmdb(path: str | Path) -> lmdb.Environment:
    """Opens a database read-only, the way every reader should (no locks, no readahead).

    LMDB allows one Environment per file per process, so environments are shared per process
    (reopened after fork, and when the database at `path` was replaced); do not close them.
    """
    path = Path(path)
    data = path / "data.mdb"
    if not data.is_file():
        raise LmdbFormatError(f"{path}: not an LMDB folder (no data.mdb)")
    st = data.stat()
    key, inode, pid = os.path.realpath(path), st.st_ino, os.getpid()
    cached = _open_envs.get(key)
    if cached is not None:
        if cached[:2] == (pid, inode):
            _check_size(path, cached[2], st.st_size)  # one stat: truncated since it was opened?
            return cached[2]
        # Replaced database (packed again with --overwrite), or inherited through fork: close the
        # old handle first, since py-lmdb refuses a second open of the same files per process.
        cached[2].close()
        del _open_envs[key]
    if st.st_size == 0:
        raise LmdbFormatError(f"{path}: damaged LMDB: data.mdb is empty")
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as e:
        raise LmdbFormatError(
            f"{path}: damaged LMDB, cannot be opened ({_lmdb_reason(e)})"
        ) from None
    try:
        _check_size(path, env, st.st_size)
    except LmdbFormatError:
        env.close()
        raise
    _open_envs[key] = (pid, inode, env)
    _prefetch(data, (key, inode))
    return env


def _lmdb_reason(error: lmdb.Error) -> str:
    # py-lmdb prefixes the path ("DB.lmdb: MDB_INVALID: File is not an LMDB file"); keep the rest
    return str(error).rsplit(": ", 1)[-1]


def _check_size(path: Path, env: lmdb.Environment, file_size: int) -> None:
    """A file shorter than its own page count is truncated; reading it through the memory map
    would kill the process with SIGBUS, so it is refused before any page past the header is read.
    The header (two meta pages) is read with plain reads by lmdb.open."""
    page_size = env.stat()["psize"]
    needed = (env.info()["last_pgno"] + 1) * page_size
    if file_size < needed:
        raise LmdbFormatError(
            f"{path}: damaged LMDB: data.mdb is {file_size:,} bytes but its pages need "
            f"{needed:,} (truncated copy?)"
        )


def _prefetch(data: Path, key: tuple[str, int]) -> None:
    # Shuffled reads of a cold database are random 4 KiB disk reads (a freshly packed one is cold
    # too: LMDB writes its compacted copy with O_DIRECT), 2-3x slower than a warm epoch. When
    # the file fits comfortably in memory, read it once sequentially in the background (about
    # 1 GB/s here); forked DataLoader workers inherit `_prefetched` and do not read it again.
    if key in _prefetched:
        return
    _prefetched.add(key)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if data.stat().st_size > memory // 2:
            return
    except (OSError, ValueError):
        return
    threading.Thread(target=_read_through, args=(data,), daemon=True).start()


def _read_through(data: Path) -> None:
    buffer = bytearray(1 << 20)
    try:
        with open(data, "rb", buffering=0) as f:
            while f.readinto(buffer):  # releases the GIL while it reads
                pass
    except OSError:
        pass  # only a warm-up


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata record of an hccr LMDB."""
    with open_lmdb(path).begin() as txn:
        raw = txn.get(META_KEY)
    if raw is None:
        raise LmdbFormatError(
            f"{path}: LMDB has no {META_KEY.decode()} record (not made by hccr-data?)"
        )
    meta = json.loads(raw)
    missing = [k for k in (*REQUIRED_META, "num_samples") if k not in meta]
    if missing:
        raise LmdbFormatError(f"{path}: metadata lacks {', '.join(missing)}")
    return meta
