"""The package's public API: `import hccr` then `hccr.Recognizer`, `hccr.create_model`, ..."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_the_public_api_is_importable_from_the_package_and_loads_lazily() -> None:
    import hccr
    from hccr.charset import Charset
    from hccr.recognizer import Recognizer

    assert hccr.Recognizer is Recognizer and hccr.Charset is Charset
    assert {"create_model", "list_models", "NormConfig", "LmdbDataset"} <= set(dir(hccr))
    assert "student_lw_fast" in hccr.list_models()
    with pytest.raises(AttributeError):
        _ = hccr.no_such_name
    out = subprocess.run(
        [sys.executable, "-c", "import hccr, sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "hccr" in out.stdout.split() and "torch" not in out.stdout.split()
