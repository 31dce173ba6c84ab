"""Shared pytest fixtures. Keep each engineer's fixtures under clearly named functions."""

from __future__ import annotations

from pathlib import Path

import pytest


# --- networks / compression / profiling fixtures -----------------------------------------------
@pytest.fixture
def one_thread():
    """Tiny nets on a shared 2-core machine: extra intra-op threads only spin (100x slower).

    Opt in per module with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    import torch  # here, so that tests without torch collect without importing it

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- recogniser / CLI / demo fixtures (issue 5) -----------------------------------------------
@pytest.fixture(scope="session")
def tiny_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle trained once per session on 10 pen-rendered characters (tests/tiny_bundle.py)."""
    from tiny_bundle import train_tiny_bundle

    return train_tiny_bundle(tmp_path_factory.mktemp("tiny-bundle") / "tiny10")


@pytest.fixture(scope="session")
def tiny_recognizer(tiny_bundle_path: Path):
    """One Recognizer over the tiny bundle, shared by the tests (it is thread-safe)."""
    from hccr.recognizer import Recognizer

    return Recognizer.from_bundle(tiny_bundle_path)
