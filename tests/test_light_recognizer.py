"""The light recogniser path: a recorded ONNX export recognises without importing torch.

Each check runs in a fresh interpreter (the test process has torch loaded already) and reports
which heavy modules the recognition imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_bundle import TINY_CHARS, char_strokes

from data_tools.render import render_strokes

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision")


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def exported(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with `hccr export`'s model.onnx and its record."""
    from hccr.cli import main as cli_main

    folder = tmp_path_factory.mktemp("light") / "tiny10"
    shutil.copytree(tiny_bundle_path, folder)
    assert cli_main(["export", str(folder)]) == 0
    assert (folder / "model.onnx.json").is_file()
    return folder


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Dark-on-white drawings of four of the tiny bundle's characters."""
    folder = tmp_path_factory.mktemp("pngs")
    paths = []
    for ch in TINY_CHARS[:4]:
        ink = render_strokes(char_strokes(ch), pen_width=0.05, canvas=128)
        path = folder / f"{ch}.png"
        Image.fromarray(255 - ink).save(path)
        paths.append(path)
    return paths


_API = """
import json, sys
from PIL import Image
from hccr.recognizer import Recognizer
rec = Recognizer.from_bundle(sys.argv[1])
top = [[(c.char, c.prob) for c in r] for r in rec.recognize([Image.open(p) for p in sys.argv[2:]])]
print(json.dumps({"backend": rec.backend, "top": top,
                  "heavy": [m for m in ("torch", "torchvision") if m in sys.modules]}))
"""

_CLI = """
import sys
from hccr.cli import main
rc = main(["recognize", "--format", "jsonl", *sys.argv[1:]])
sys.stdout.flush()
print("HEAVY", [m for m in ("torch", "torchvision") if m in sys.modules], file=sys.stderr)
sys.exit(rc)
"""


def _heavy(stderr: str) -> list[str]:
    line = next(ln for ln in stderr.splitlines() if ln.startswith("HEAVY"))
    return eval(line.removeprefix("HEAVY "))  # a printed list of names


def test_recognizer_with_a_recorded_export_imports_no_torch(exported: Path, pngs) -> None:
    proc = _python(_API, str(exported), *map(str, pngs))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["backend"] == "onnx"
    assert got["heavy"] == []
    assert [r[0][0] for r in got["top"]] == list(TINY_CHARS[:4])

    # the same answers as the float torch model, within the export's tolerance
    from hccr.recognizer import Recognizer

    want = Recognizer.from_bundle(exported, backend="torch")
    want_top = want.recognize([Image.open(p) for p in pngs])
    for row, ref in zip(got["top"], want_top, strict=True):
        assert [c for c, _ in row[:3]] == [c.char for c in ref[:3]]
        np.testing.assert_allclose([p for _, p in row], [c.prob for c in ref], atol=1e-4)


def test_cli_on_image_files_imports_no_torch(exported: Path, pngs) -> None:
    proc = _python(_CLI, "--model", str(exported), *map(str, pngs))
    assert proc.returncode == 0, proc.stderr
    assert _heavy(proc.stderr) == []
    assert "(onnx)" in proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["top"][0]["char"] for r in rows] == list(TINY_CHARS[:4])

    # the float model (torch) gives the same lines within the export's tolerance
    torch_proc = _python(_CLI, "--model", str(exported), "--backend", "torch", *map(str, pngs))
    assert torch_proc.returncode == 0, torch_proc.stderr
    assert "torch" in _heavy(torch_proc.stderr)
    want = [json.loads(line) for line in torch_proc.stdout.splitlines()]
    for row, ref in zip(rows, want, strict=True):
        assert [row[k] for k in ("source", "index", "label")] == [
            ref[k] for k in ("source", "index", "label")
        ]
        assert [c["char"] for c in row["top"][:3]] == [c["char"] for c in ref["top"][:3]]
        got_p = [c["prob"] for c in row["top"]]
        np.testing.assert_allclose(got_p, [c["prob"] for c in ref["top"]], atol=1e-4)


def test_in_process_reading_matches_the_dataloader_workers(exported: Path, pngs) -> None:
    """A few images are read in the main process; many go through DataLoader workers (one
    image per batch here, so two workers): the lines are the same, in the same order."""
    files = [str(p) for p in pngs]
    light = _python(_CLI, "--model", str(exported), *files)
    workers = _python(_CLI, "--model", str(exported), "--batch-size", "1", "--workers", "2", *files)
    assert light.returncode == 0 and workers.returncode == 0, workers.stderr
    assert "torch" in _heavy(workers.stderr)  # the DataLoader path is the torch one
    assert light.stdout == workers.stdout


def test_stale_export_falls_back_to_torch(exported: Path, pngs, tmp_path: Path) -> None:
    import torch

    folder = tmp_path / "stale"
    shutil.copytree(exported, folder)
    weights = folder / "weights.pt"
    state = torch.load(weights, weights_only=True)
    # other weights (still a good model: scaled logits keep the ranking), so the record is stale
    state = {k: v * 1.5 if k.startswith("classifier") and v.is_floating_point() else v
             for k, v in state.items()}  # fmt: skip
    torch.save(state, weights)
    proc = _python(_API, str(folder), *map(str, pngs))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert "stale" in proc.stderr and "using the float model" in proc.stderr
    assert got["backend"] == "torch"
    assert "torch" in got["heavy"]
    assert [r[0][0] for r in got["top"]] == list(TINY_CHARS[:4])


def test_cli_on_an_lmdb_in_process_imports_no_torch(exported: Path, pngs, tmp_path: Path) -> None:
    """An LMDB is read through LmdbDataset, as training reads it, without torch (`--workers 0`);
    its labels are scored."""
    from hccr.bundle import load_bundle_info
    from hccr.lmdb_format import LmdbWriter
    from hccr.preprocess import preprocess

    info = load_bundle_info(exported)
    db = tmp_path / "mine.lmdb"
    with LmdbWriter(db) as writer:
        for label, path in enumerate(pngs):
            writer.add(preprocess(Image.open(path), info.norm), label)
        chars = list(TINY_CHARS[: len(pngs)])
        writer.finish({"charset": chars, "num_classes": len(chars),
                       "image_size": info.norm.size, "norm": info.norm.to_dict(),
                       "sources": {"pngs": len(chars)}})  # fmt: skip
    proc = _python(_CLI, "--model", str(exported), "--workers", "0", str(db))
    assert proc.returncode == 0, proc.stderr
    assert _heavy(proc.stderr) == []
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["label"] for r in rows] == chars
    assert [r["top"][0]["char"] for r in rows] == chars
