"""Character sets: the class list of a dataset or model, and the map between chars and class indices."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

GB2312_LEVEL1_SIZE = 3755  # the classes of the HCCR benchmarks (CASIA-HWDB1.1, ICDAR-2013)


class CharsetError(ValueError):
    """A charset file or spec that cannot be used."""


def _gb2312_level1() -> tuple[str, ...]:
    # Level 1 is rows 0xB0..0xD7, cells 0xA1..0xFE, in GB code order; row 0xD7 ends at 0xD7F9.
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            if hi == 0xD7 and lo > 0xF9:
                break
            chars.append(bytes((hi, lo)).decode("gb2312"))
    return tuple(chars)


class Charset:
    """An ordered set of characters; a character's position is its class index."""

    def __init__(self, chars: Iterable[str], name: str = "custom") -> None:
        self.chars = tuple(chars)
        self.name = name
        self._index = {ch: i for i, ch in enumerate(self.chars)}
        if len(self._index) != len(self.chars):
            dup = sorted({c for c in self.chars if self.chars.count(c) > 1})
            raise CharsetError(f"charset {name!r} repeats characters: {''.join(dup[:20])}")
        if any(len(ch) != 1 for ch in self.chars):
            bad = next(ch for ch in self.chars if len(ch) != 1)
            raise CharsetError(f"charset {name!r}: entry {bad!r} is not a single character")

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: object) -> bool:
        return ch in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Charset) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Charset({self.name!r}, {len(self)} classes)"

    def index(self, ch: str) -> int:
        try:
            return self._index[ch]
        except KeyError:
            raise CharsetError(f"{ch!r} is not in charset {self.name!r}") from None

    def char(self, i: int) -> str:
        return self.chars[i]

    @classmethod
    def gb1(cls) -> Charset:
        """GB2312 level 1: 3,755 hanzi in GB code order."""
        return cls(_gb2312_level1(), name="gb1")

    @classmethod
    def load(cls, path: str | Path) -> Charset:
        """Reads a UTF-8 file with one character per line (blank lines ignored)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise CharsetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        chars = [line.strip("\r\n") for line in text.split("\n")]
        chars = [c for c in chars if c.strip()]
        if not chars:
            raise CharsetError(f"{path}: charset file is empty")
        return cls(chars, name=path.name)

    def save(self, path: str | Path) -> None:
        Path(path).write_text("\n".join(self.chars) + "\n", encoding="utf-8")

    @classmethod
    def from_spec(cls, spec: str, seen: Iterable[str] | None = None) -> Charset:
        """`gb1`, `seen` (the classes met in the sources, in code-point order), or a file path."""
        if spec == "gb1":
            return cls.gb1()
        if spec == "seen":
            if seen is None:
                raise CharsetError("charset 'seen' needs the sources to be scanned first")
            return cls(sorted(set(seen)), name="seen")
        path = Path(spec)
        if not path.is_file():
            raise CharsetError(f"unknown charset {spec!r}; use gb1, seen, or a file path")
        return cls.load(path)
