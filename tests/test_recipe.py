"""The README's full-data recipe, run as written at toy scale: its commands, in its order, on
generated `.gnt` files in the CASIA layout (pack -> teacher under torchrun -> distil -> export ->
eval -> recognise). Only the scale changes: one epoch, narrow networks, small batches, two CPU
processes instead of four GPUs; every step's outputs are checked."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data_tools.cli import main as data_main
from hccr.bundle import load_bundle
from hccr.casia import iter_gnt, write_gnt
from hccr.charset import Charset
from hccr.cli import main as hccr_main
from hccr.dataset import LmdbDataset

REPO = Path(__file__).resolve().parents[1]
TOY_CHARS = Charset.gb1().chars[:6]  # GB2312 level-1 classes, as CASIA labels them
# the recipe's flags at toy scale: same flags, other values
TOY_VALUES = {"--epochs": "1", "--batch-size": "16", "--lr": "0.05", "--workers": "0",
              "--nproc-per-node": "2"}  # fmt: skip
TOY_KWARGS = {
    "teacher_cnn": {"channels": [8, 8, 16, 16], "depths": [1, 1, 1, 1], "feat_dim": 32},
    "student_lw_fast": {"channels": [4, 8, 8, 8, 8, 8, 8], "feat_dim": 16},
}
TOY_EXTRA = ["--no-progress", "--threads", "1", "--augment", "0", "--device", "cpu"]
# writers per folder, named as CASIA names its files (the writer id is the first number)
LAYOUT = {
    "HWDB1.0trn_gnt": ["001-f.gnt", "002-f.gnt"],
    "HWDB1.1trn_gnt": ["1001-c.gnt", "1002-c.gnt"],
    "HWDB1.1tst_gnt": ["1241-c.gnt"],
    "competition-gnt": ["C001-f.gnt"],
}


def recipe_commands() -> list[list[str]]:
    """The command lines of the README's "Full-data recipe" block, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Full-data recipe", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "README: no command block under 'Full-data recipe'"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line]


def toy_scale(argv: list[str]) -> list[str]:
    out = list(argv)
    values = {**TOY_VALUES, "--workers": "1"} if "pack" in argv else TOY_VALUES  # pack needs one
    for i, word in enumerate(out[:-1]):
        if word in values:
            out[i + 1] = values[word]
    if "--arch" in out and _verb(out) in ("train", "distill"):
        arch = out[out.index("--arch") + 1]
        out += ["--model-kwargs", json.dumps(TOY_KWARGS[arch]), *TOY_EXTRA]
    return out


def _bar(c: int, rng: np.random.Generator) -> np.ndarray:
    """Class c: a dark horizontal bar at height ~c and a vertical one at column ~c, on white,
    at a writer-like random size (CASIA bitmaps vary in size)."""
    h, w = rng.integers(40, 80, size=2)
    image = np.full((h, w), 255, np.uint8)
    y, x = int((0.15 + 0.12 * c) * h), int((0.85 - 0.12 * c) * w)
    image[y : y + 4, 3 : w - 3] = rng.integers(20, 90)
    image[3 : h - 3, x : x + 4] = rng.integers(20, 90)
    return image


def make_casia_folders(root: Path, per_class: int = 4) -> dict[Path, int]:
    """`.gnt` files in the CASIA folder layout; returns records per file."""
    rng = np.random.default_rng(0)
    counts = {}
    for folder, names in LAYOUT.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            samples = [
                (ch, _bar(c, rng)) for c, ch in enumerate(TOY_CHARS) for _ in range(per_class)
            ]
            path = root / folder / name
            counts[path] = write_gnt(path, samples)
    return counts


def run(argv: list[str], tmp: Path, capsys: pytest.CaptureFixture) -> str:
    """One recipe line: `hccr` / `hccr-data` in this process, anything else (torchrun, mkdir)
    as a subprocess."""
    if argv[0] not in ("hccr", "hccr-data"):
        cmd = argv
        if argv[0] == "torchrun":  # torchrun is this interpreter's torch.distributed.run
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", *argv[1:]]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stderr[-3000:]}"
        return done.stdout
    entry = {"hccr": hccr_main, "hccr-data": data_main}[argv[0]]
    assert entry(argv[1:]) == 0, shlex.join(argv)
    return capsys.readouterr().out


def _verb(argv: list[str]) -> str:
    if argv[0] == "torchrun":
        return argv[argv.index("hccr.cli") + 1]
    return argv[1] if argv[0] in ("hccr", "hccr-data") else argv[0]


@pytest.mark.slow
def test_full_data_recipe_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    counts = make_casia_folders(tmp_path)
    monkeypatch.chdir(tmp_path)  # the recipe's relative paths: data/, runs/, models/
    commands = recipe_commands()
    steps = [_verb(c) for c in commands]
    assert steps == ["mkdir", "pack", "pack", "pack", "train", "distill", "export", "export", "eval",
                     "eval", "recognize"]  # fmt: skip
    outputs = [run(toy_scale(argv), tmp_path, capsys) for argv in commands]

    train = LmdbDataset("data/hwdb-train.lmdb")
    assert len(train) == sum(n for p, n in counts.items() if "trn" in p.parent.name)
    assert len(train.charset) == 3755  # --charset gb1, the benchmark's classes
    assert (
        len(LmdbDataset("data/icdar2013.lmdb")) == counts[tmp_path / "competition-gnt/C001-f.gnt"]
    )
    teacher_run = json.loads(Path("runs/hwdb-teacher/config.json").read_text())
    assert teacher_run["world_size"] == 2  # two processes under torchrun (gloo)
    student_run = json.loads(Path("runs/hwdb-student/config.json").read_text())
    assert student_run["distill"]["kd_mode"] == "feature" and student_run["world_size"] == 2
    for name, arch in (("hwdb-teacher", "teacher_cnn"), ("hwdb-student", "student_lw_fast")):
        bundle = load_bundle(Path("models") / name)
        assert bundle.arch == arch and (Path("models") / name / "model.onnx").is_file()
        weights = torch.load(Path("models") / name / "weights.pt", weights_only=True)
        assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    for out in outputs[8:10]:
        scores = json.loads(out.strip().splitlines()[-1])
        assert scores["n"] == counts[tmp_path / "competition-gnt/C001-f.gnt"]
    lines = [json.loads(line) for line in outputs[10].splitlines()]
    labels = [r.char for r in iter_gnt(tmp_path / "competition-gnt/C001-f.gnt")]
    assert [line["label"] for line in lines] == labels
    assert all(len(line["top"]) >= 5 and line["top"][0]["char"] in Charset.gb1() for line in lines)
