"""The record beside an export (`model.onnx.json`): SHA-256 of the export and of its weights.

Light on purpose (no torch): the recogniser reads it to decide whether an export may do the work
without loading the float model at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hccr.atomic import atomic_write_text


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(export: str | Path) -> Path:
    """The JSON record beside an export: `model.onnx` -> `model.onnx.json`."""
    export = Path(export)
    return export.with_name(export.name + ".json")


def write_export_record(export: str | Path, weights: str | Path, report: dict[str, Any]) -> Path:
    """Records the SHA-256 of an export and of the weights it was made from, with its check report.

    File times cannot tell a stale export from a current one after a `git clone`, which
    writes files in any order; the hashes can, and the export's own hash also catches an export
    replaced by another file after its check.
    """
    record = {
        **report,
        "export_sha256": file_sha256(export),
        "weights_sha256": file_sha256(weights),
    }
    out = record_path(export)
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    return out


def export_record_status(export: str | Path, weights: str | Path) -> str | None:
    """What the record beside `export` says: "current", "stale" (made from other weights),
    "replaced" (the file is not the export that was checked) or None (no readable record)."""
    try:
        record = json.loads(record_path(export).read_text(encoding="utf-8"))
        want_weights = record["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    want_export = record.get("export_sha256")  # absent from records written before it existed
    if want_export is not None and want_export != file_sha256(export):
        return "replaced"
    return "current" if want_weights == file_sha256(weights) else "stale"


def export_is_current(export: str | Path, weights: str | Path) -> bool | None:
    """Whether `export` is the checked export made from `weights` (None: no record to tell)."""
    status = export_record_status(export, weights)
    return None if status is None else status == "current"
