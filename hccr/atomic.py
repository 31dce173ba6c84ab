"""All-or-nothing outputs: build under a hidden temporary name beside the target, then rename.

Every writer of files users rely on (LMDBs, bundles, exports, checkpoints, `.gnt` files) goes
through here, so an interrupted run leaves either the old file or the new one, never half of one,
and its leftovers are recognisable (`.NAME.partial-PID`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def partial_path(out: Path) -> Path:
    """Where `out` is built before it is renamed into place (same folder, so the rename is atomic)."""
    return out.with_name(f".{out.name}.partial-{os.getpid()}")


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Calls write(tmp_path) then renames tmp onto path, so `path` is complete or untouched."""
    tmp = partial_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Writes UTF-8 `text` to `path` through a temporary file (see `atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
