"""CASIA-HWDB / OLHWDB record readers and writers: offline `.gnt` bitmaps and online `.pot` strokes.

Formats (Liu et al., "CASIA online and offline Chinese handwriting databases", ICDAR 2011):

- `.gnt` record: uint32 LE total size, 2-byte tag code (GB bytes in file order), uint16 LE width,
  uint16 LE height, width*height uint8 grey bitmap with a white (255) background.
- `.pot` record: uint16 LE total size, 4-byte tag (bytes 0-1 a LE uint16 GB code, bytes 2-3 zero),
  uint16 LE stroke count, then int16 LE (x, y) points; (-1, 0) ends a stroke, (-1, -1) the character.

Readers stream record by record; they never hold a whole file in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hccr.atomic import atomic_write

MAX_BITMAP_SIDE = 1024  # larger bitmaps are corrupt records, not characters
_GNT_HEADER = struct.Struct("<I2sHH")  # size, tag, width, height
_POT_HEADER = struct.Struct("<H4sH")  # size, tag, stroke count
_POT_END_STROKE = (-1, 0)
_POT_END_CHAR = (-1, -1)


class CasiaFormatError(ValueError):
    """A record that does not follow the CASIA format; the message names file and byte offset."""

    def __init__(self, path: str | Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: byte {offset}: {reason}")
        self.path = str(path)
        self.offset = offset
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, int, str]]:
        # rebuilt from its parts when it crosses a process boundary (pack workers)
        return (type(self), (self.path, self.offset, self.reason))


def decode_tag(code: bytes) -> str | None:
    """GB tag bytes -> the character, or None when the code is not a GBK character.

    Single-byte symbols are stored with a NUL byte (b"\\x00!" or b"!\\x00"); the NUL is dropped.
    """
    raw = code.replace(b"\x00", b"")
    if not raw:
        return None
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError:
        return None
    return text if len(text) == 1 else None


def encode_tag(char: str) -> bytes:
    """The character -> its 2-byte GB tag (single-byte characters are NUL-padded in front)."""
    try:
        raw = char.encode("gbk")
    except UnicodeEncodeError:
        raise ValueError(
            f"{char!r} has no GBK code; CASIA files can only hold GBK characters"
        ) from None
    if len(raw) == 1:
        raw = b"\x00" + raw
    if len(raw) != 2:
        raise ValueError(f"{char!r} is not a single GBK character")
    return raw


@dataclass(frozen=True)
class GntRecord:
    """One offline character: `bitmap` is (H, W) uint8, white (255) background."""

    char: str | None
    code: bytes
    bitmap: np.ndarray
    offset: int


@dataclass(frozen=True)
class PotRecord:
    """One online character: `strokes` are (N, 2) int32 arrays of (x, y) tablet coordinates."""

    char: str | None
    code: bytes
    strokes: list[np.ndarray]
    offset: int


def scan_records(path: str | Path, start: int = 0) -> Iterator[int]:
    """Yields the byte offset of each record by reading size fields only (a fast framing check).

    Raises:
        CasiaFormatError: at the first record whose size field cannot be right.
    """
    path = Path(path)
    header = _header_for(path)
    file_size = path.stat().st_size
    with open(path, "rb", buffering=1 << 16) as f:
        offset = start
        while offset < file_size:
            f.seek(offset)
            size = _read_size(f, path, offset, header, file_size)
            yield offset
            offset += size


def iter_gnt(path: str | Path, start: int = 0, count: int | None = None) -> Iterator[GntRecord]:
    """Yields `.gnt` records in order from byte `start`; raises CasiaFormatError at a bad one."""
    for raw, offset in _iter_raw(Path(path), _GNT_HEADER, start, count):
        yield parse_gnt(raw, path, offset)


def iter_pot(path: str | Path, start: int = 0, count: int | None = None) -> Iterator[PotRecord]:
    """Yields `.pot` records in order from byte `start`; raises CasiaFormatError at a bad one."""
    for raw, offset in _iter_raw(Path(path), _POT_HEADER, start, count):
        yield parse_pot(raw, path, offset)


def _header_for(path: Path) -> struct.Struct:
    suffix = path.suffix.lower()
    if suffix == ".gnt":
        return _GNT_HEADER
    if suffix == ".pot":
        return _POT_HEADER
    raise ValueError(f"{path}: unknown CASIA file type {suffix!r} (expected .gnt or .pot)")


def _read_size(f: BinaryIO, path: Path, offset: int, header: struct.Struct, file_size: int) -> int:
    head = f.read(header.size)
    if len(head) < header.size:
        raise CasiaFormatError(
            path, offset, f"truncated record header ({len(head)} of {header.size} bytes)"
        )
    size = header.unpack(head)[0]
    if size < header.size:
        raise CasiaFormatError(path, offset, f"size field {size} is too small (not a CASIA file?)")
    if offset + size > file_size:
        raise CasiaFormatError(
            path,
            offset,
            f"size field {size} but {file_size - offset} bytes left (truncated, or not a CASIA file)",
        )
    return size


def _iter_raw(
    path: Path, header: struct.Struct, start: int, count: int | None
) -> Iterator[tuple[bytes, int]]:
    file_size = path.stat().st_size
    with open(path, "rb", buffering=1 << 20) as f:
        f.seek(start)
        offset, n = start, 0
        while offset < file_size and (count is None or n < count):
            size = _read_size(f, path, offset, header, file_size)
            f.seek(offset)
            yield f.read(size), offset
            offset += size
            n += 1


def parse_gnt(raw: bytes, path: str | Path, offset: int) -> GntRecord:
    """One framed `.gnt` record -> GntRecord, validating its header."""
    size, code, width, height = _GNT_HEADER.unpack_from(raw)
    if width == 0 or height == 0:
        raise CasiaFormatError(path, offset, f"empty bitmap {width}x{height}")
    if width > MAX_BITMAP_SIDE or height > MAX_BITMAP_SIDE:
        raise CasiaFormatError(
            path, offset, f"bitmap {width}x{height} exceeds {MAX_BITMAP_SIDE}x{MAX_BITMAP_SIDE}"
        )
    if size != _GNT_HEADER.size + width * height:
        raise CasiaFormatError(
            path, offset, f"size field {size} != 10 + {width}*{height} (not a CASIA .gnt?)"
        )
    bitmap = np.frombuffer(raw, dtype=np.uint8, offset=_GNT_HEADER.size).reshape(height, width)
    return GntRecord(decode_tag(code), code, bitmap, offset)


def parse_pot(raw: bytes, path: str | Path, offset: int) -> PotRecord:
    """One framed `.pot` record -> PotRecord, validating its strokes."""
    size, tag, num_strokes = _POT_HEADER.unpack_from(raw)
    body_size = size - _POT_HEADER.size
    if body_size < 4 or body_size % 4:
        raise CasiaFormatError(
            path, offset, f"size field {size} is not 8 + 4*points (not a CASIA .pot?)"
        )
    if tag[2:] != b"\x00\x00":
        raise CasiaFormatError(
            path, offset, f"tag bytes {tag.hex()} end in non-zero bytes (not a CASIA .pot?)"
        )
    points = np.frombuffer(raw, dtype="<i2", offset=_POT_HEADER.size).reshape(-1, 2)
    strokes = _split_strokes(Path(path), offset, points, num_strokes)
    code = struct.pack(">H", struct.unpack("<H", tag[:2])[0])
    return PotRecord(decode_tag(code), code, strokes, offset)


def _split_strokes(
    path: Path, offset: int, points: np.ndarray, num_strokes: int
) -> list[np.ndarray]:
    if tuple(points[-1]) != _POT_END_CHAR:
        raise CasiaFormatError(
            path, offset, "record does not end with the (-1, -1) end-of-character mark"
        )
    ends = np.flatnonzero((points[:-1, 0] == -1) & (points[:-1, 1] == 0))
    if len(ends) != num_strokes:
        raise CasiaFormatError(
            path, offset, f"stroke count {num_strokes} but {len(ends)} pen-up marks"
        )
    strokes, start = [], 0
    for end in ends:
        if end == start:
            raise CasiaFormatError(path, offset, "empty stroke")
        strokes.append(points[start:end].astype(np.int32))
        start = end + 1
    if start != len(points) - 1:
        raise CasiaFormatError(path, offset, "points after the last pen-up mark")
    return strokes


def _write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)

    atomic_write(path, write)


def write_gnt(path: str | Path, samples: Iterable[tuple[str, np.ndarray]]) -> int:
    """Writes (char, bitmap) pairs as a `.gnt` file (white background bitmaps); returns the count."""
    count = 0

    def records() -> Iterator[bytes]:
        nonlocal count
        for char, bitmap in samples:
            bitmap = np.ascontiguousarray(bitmap, dtype=np.uint8)
            height, width = bitmap.shape
            if not (0 < width <= MAX_BITMAP_SIDE and 0 < height <= MAX_BITMAP_SIDE):
                raise ValueError(
                    f"{path}: sample {count}: bitmap {width}x{height} cannot be written"
                )
            yield _GNT_HEADER.pack(
                _GNT_HEADER.size + width * height, encode_tag(char), width, height
            )
            yield bitmap.tobytes()
            count += 1

    _write_atomic(Path(path), records())
    return count


def write_pot(path: str | Path, samples: Iterable[tuple[str, list[np.ndarray]]]) -> int:
    """Writes (char, strokes) pairs as a `.pot` file; returns the count."""
    count = 0

    def records() -> Iterator[bytes]:
        nonlocal count
        for char, strokes in samples:
            parts = []
            for stroke in strokes:
                parts.append(np.asarray(stroke, dtype="<i2").reshape(-1, 2))
                parts.append(np.array([_POT_END_STROKE], dtype="<i2"))
            parts.append(np.array([_POT_END_CHAR], dtype="<i2"))
            body = np.concatenate(parts).tobytes()
            tag = struct.pack("<H", int.from_bytes(encode_tag(char), "big")) + b"\x00\x00"
            yield _POT_HEADER.pack(_POT_HEADER.size + len(body), tag, len(strokes)) + body
            count += 1

    _write_atomic(Path(path), records())
    return count
