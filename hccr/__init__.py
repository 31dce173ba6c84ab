"""hccr: handwritten Chinese character recognition, from CASIA-HWDB to a distilled recogniser.

The public API, each name imported on first use (so `import hccr` stays light and the CLI's
`--help` does not load torch):

    >>> import hccr
    >>> rec = hccr.Recognizer.from_bundle("models/gb1-student")
    >>> rec.recognize(image, topk=5)            # [[Candidate(char='永', prob=0.93), ...]]
    >>> hccr.list_models()                      # registered architectures
    >>> net = hccr.create_model("student_lw_fast", num_classes=3755)
    >>> hccr.Charset.gb1().chars[:3]            # ('啊', '阿', '埃')
    >>> hccr.NormConfig(size=64, method="moment")
    >>> hccr.LmdbDataset("data/train.lmdb")[0]  # (uint8 tensor (1, 64, 64), label)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "Recognizer": "hccr.recognizer",
    "create_model": "hccr.nets",
    "list_models": "hccr.nets",
    "Charset": "hccr.charset",
    "NormConfig": "hccr.preprocess",
    "LmdbDataset": "hccr.dataset",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'hccr' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
