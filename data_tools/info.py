"""`summarize(path)`: the metadata of an hccr LMDB worth showing (`hccr-data info`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hccr.lmdb_format import read_meta


def summarize(path: Path) -> dict[str, Any]:
    """The metadata worth showing, with the charset reduced to its size and name."""
    meta = read_meta(path)
    out = {k: v for k, v in meta.items() if k not in ("charset", "skipped_examples")}
    out["path"] = str(path)
    out["charset_head"] = "".join(meta["charset"][:20])
    out["num_writers"] = len(meta.get("writers", []))
    out["input"] = meta.get("input", "image")  # LMDBs older than the online model hold images
    out["size_bytes"] = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return out
