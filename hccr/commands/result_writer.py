"""`hccr recognize` output: one line per recognised character as a table, CSV or JSON lines.

A file name that is not UTF-8 (Python holds its bytes as lone surrogates, os.fsdecode's escapes)
is written as `\\udcff` escapes in JSON, so every line is valid UTF-8 and `json.loads` gives back
the name that os.fsencode turns into the original bytes. A failed write (a full disk under
`> out.jsonl`) is one error naming the file standard output goes to.
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import Any, TextIO

from hccr.atomic import OutputError

FORMATS = ("table", "csv", "jsonl")
_SURROGATE = re.compile("[\ud800-\udfff]")


class ResultWriter:
    """Writes one line per recognised character in the chosen format."""

    def __init__(self, out: TextIO, fmt: str, topk: int, source_width: int) -> None:
        self.out, self.fmt, self.topk = out, fmt, topk
        self.source_width = max(6, min(source_width, 60))
        if fmt == "csv":
            self._csv = csv.writer(out, lineterminator="\n")
            header = ["source", "index", "label"]
            for r in range(1, topk + 1):
                header += [f"char{r}", f"prob{r}"]
            self._csv.writerow(header)
        elif fmt == "table":
            w = self.source_width
            out.write(f"{'SOURCE':<{w}}  {'INDEX':>6}  LABEL  TOP-{topk}\n")

    def write(self, source: str, index: int | None, label: str | None, top: list) -> None:
        try:
            self._write(source, index, label, top)
        except BrokenPipeError:
            raise
        except OSError as e:  # a full disk under `> out.jsonl`: one line naming the file
            raise self._failed(e) from None

    def flush(self) -> None:
        try:
            self.out.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._failed(e) from None

    def _failed(self, error: OSError) -> OSError:
        name = "standard output"
        try:
            name = f"{os.readlink(f'/proc/self/fd/{self.out.fileno()}')} ({name})"
        except (OSError, ValueError, AttributeError):
            pass  # not a file descriptor (a test's buffer), or no /proc
        return OutputError(name, error.strerror or str(error))

    def _write(self, source: str, index: int | None, label: str | None, top: list) -> None:
        if self.fmt == "jsonl":
            record = {
                "source": source,
                "index": index,
                "label": label,
                "top": [{"char": c.char, "prob": round(c.prob, 6)} for c in top],
            }
            line = json.dumps(record, ensure_ascii=False)
            if _SURROGATE.search(line):  # a file name that is not UTF-8 (os.fsdecode's escapes)
                line = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
            self.out.write(line + "\n")
        elif self.fmt == "csv":
            row: list[Any] = [source, "" if index is None else index, label or ""]
            for c in top:
                row += [c.char, f"{c.prob:.6f}"]
            self._csv.writerow(row)
        else:
            w = self.source_width
            shown = source if len(source) <= w else "..." + source[-(w - 3) :]
            idx = "-" if index is None else str(index)
            lab = label or "-"
            cands = "  ".join(f"{c.char} {c.prob:.3f}" for c in top)
            # a CJK label is two columns wide: pad to the LABEL header's five columns
            pad = 5 - sum(2 if ord(ch) > 0x2E80 else 1 for ch in lab)
            self.out.write(f"{shown:<{w}}  {idx:>6}  {lab}{' ' * max(pad, 0)}  {cands}\n")
