"""All-or-nothing outputs: build under a hidden temporary name beside the target, then rename.

Every writer of files users rely on (LMDBs, bundles, exports, checkpoints, `.gnt` files) goes
through here, so an interrupted run leaves either the old file or the new one, never half of one,
and its leftovers are recognisable (`.NAME.partial-PID`): a later run removes those whose process
no longer runs (`remove_stale_partials`). A failed write is an `OutputError` naming the output.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

_LOW_SPACE_BYTES = 1 << 20  # free space under this after a failed write: the disk is full


class OutputError(OSError):
    """An output that could not be written (disk full, I/O error); the message names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: cannot write: {reason}")
        self.path = str(path)
        self.reason = reason


def partial_path(out: Path) -> Path:
    """Where `out` is built before it is renamed into place (same folder, so the rename is atomic)."""
    return out.with_name(f".{out.name}.partial-{os.getpid()}")


def write_failure(folder: Path, error: BaseException) -> str:
    """Why a write into `folder` failed, in words: disk full, or the error's own text.

    Called before the partial output is removed. Some writers hide the errno (LMDB reports
    ENOSPC as an I/O error, torch.save as a RuntimeError), so a nearly full device is named.
    """
    try:
        if shutil.disk_usage(folder).free < _LOW_SPACE_BYTES:
            return "no space left on the device"
    except OSError:
        pass
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Calls write(tmp_path) then renames tmp onto path, so `path` is complete or untouched.

    Raises:
        OutputError: the write failed for lack of space or with an OSError (tmp removed).
    """
    tmp = partial_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        reason = write_failure(path.parent, e)
        tmp.unlink(missing_ok=True)
        raise OutputError(path, reason) from None
    except Exception as e:
        reason = write_failure(path.parent, e)
        tmp.unlink(missing_ok=True)
        if reason == "no space left on the device":
            raise OutputError(path, reason) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Writes UTF-8 `text` to `path` through a temporary file (see `atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Removes what killed runs (SIGKILL, a crash) left of `out`: `.NAME.partial-PID` and its
    companions (`-compact`, ...) whose process no longer runs on this machine.

    Returns:
        The paths removed, for the caller to report.
    """
    pattern = re.compile(re.escape(f".{out.name}.partial-") + r"(\d+)(?:\D.*)?")
    removed: list[Path] = []
    try:
        entries = sorted(out.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or _process_exists(int(m.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
