"""Loading a `bench/` script as a module, so tests can call its functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str, module_name: str | None = None) -> ModuleType:
    """bench/NAME.py as a module (not registered in sys.modules: each test module gets its own)."""
    spec = importlib.util.spec_from_file_location(module_name or name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
