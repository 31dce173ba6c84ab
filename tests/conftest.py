"""Shared pytest fixtures. Keep each engineer's fixtures under clearly named functions."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def tiny_online_bundle_path(
    tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny bundle widened to an online (9-channel trajectory) bundle (issue 26)."""
    from tiny_bundle import make_online_bundle

    return make_online_bundle(tiny_bundle_path, tmp_path_factory.mktemp("online") / "tiny10-online")


# --- demo fixtures (issue 21) -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_demo(tiny_bundle_path: Path) -> Iterator[tuple[str, Path]]:
    """The demo over the tiny bundle on 127.0.0.1, launched as `hccr demo` launches it, in this
    process and with its own upload folder; yields (URL, that folder)."""
    import torch

    from demo.app import build_demo, launch
    from demo.recognition import upload_folder
    from hccr.recognizer import Recognizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `hccr demo` does: one character per request
    saved = os.environ.pop("GRADIO_TEMP_DIR", None)
    try:
        with upload_folder() as folder:
            demo = build_demo(Recognizer.from_bundle(tiny_bundle_path))
            port = free_port()
            launch(demo, port=port, block=False)
            try:
                yield f"http://127.0.0.1:{port}/", folder
            finally:
                demo.close()
    finally:
        if saved is not None:
            os.environ["GRADIO_TEMP_DIR"] = saved
        torch.set_num_threads(threads)
