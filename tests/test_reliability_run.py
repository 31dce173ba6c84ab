"""Reliability, running side: what `hccr eval`, `hccr recognize` and `hccr train` do with labels
the model lacks, file names that are not UTF-8, corrupt or empty `.gnt` input, a SIGTERM to the
whole process group, and a resume in the middle of an epoch. Each test makes its own fixture.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_bundle import TINY_CHARS, TINY_NORM, render_sample
from tiny_lmdb import FAST, TINY_STUDENT, make_tiny_lmdb

from hccr.casia import write_gnt
from hccr.cli import main
from hccr.dataset import LmdbDataset
from hccr.lmdb_format import LmdbWriter
from hccr.preprocess import normalize
from hccr.run_folder import read_metrics

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _one_line(err: str) -> str:
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    return err.strip()


# --- eval: labels the model does not know are not scored -------------------------------------


def _lmdb_of(out: Path, chars: str, drawn: str, per_char: int = 3) -> Path:
    """An LMDB at the tiny bundle's size whose class c holds renderings of drawn[c]."""
    rng = np.random.default_rng(3)
    with LmdbWriter(out) as writer:
        for label, ch in enumerate(drawn):
            for _ in range(per_char):
                writer.add(normalize(render_sample(ch, rng, pen_width=0.06), TINY_NORM), label)
        writer.finish({"charset": list(chars), "num_classes": len(chars), "sources": {},
                       "image_size": TINY_NORM.size, "norm": TINY_NORM.to_dict()})  # fmt: skip
    return out


def test_eval_leaves_labels_outside_the_model_unscored(tmp_path, capsys, tiny_bundle_path) -> None:
    # classes 0-3 are the model's; 4-5 (drawn like 一 and 十, labelled with level-2 hanzi) are not
    db = _lmdb_of(tmp_path / "mixed.lmdb", TINY_CHARS[:4] + "丂丄", TINY_CHARS[:4] + "一十")
    argv = ["eval", str(tiny_bundle_path), "--data", str(db), "--json", "--workers", "0"]
    assert main([*argv, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    scores = json.loads(out)
    assert scores["n"] == 12 and scores["outside"] == 6
    assert scores["top1"] >= 0.9  # as good as on its own classes, not diluted by 6 misses
    assert "6 sample(s) with labels outside the model's charset (10 classes) were not scored" in err


def test_eval_on_a_disjoint_charset_is_an_error(tmp_path, capsys, tiny_bundle_path) -> None:
    db = _lmdb_of(tmp_path / "other.lmdb", "丂丄", "一十")
    argv = ["eval", str(tiny_bundle_path), "--data", str(db), "--workers", "0", "--no-progress"]
    assert main(argv) == 1
    err = _one_line(capsys.readouterr().err)
    assert str(db) in err and "none of its 2 classes" in err and "nothing to score" in err


# --- recognize: every jsonl line is valid UTF-8 JSON, whatever the file names -------------------


def test_jsonl_escapes_file_names_that_are_not_utf8(tmp_path, capsys, tiny_bundle_path) -> None:
    from PIL import Image

    folder = tmp_path / "scans"
    folder.mkdir()
    name = os.fsdecode(b"\xff\xfe.png")  # bytes that no UTF-8 decoder accepts
    image = 255 - render_sample("十", np.random.default_rng(0), pen_width=0.06)
    Image.fromarray(image).save(folder / name)
    assert main(["recognize", str(folder), "--model", str(tiny_bundle_path), "--format", "jsonl",
                 "--workers", "0"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    raw = out.encode("utf-8")  # lone surrogates in the text would make this raise
    (record,) = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert os.fsencode(record["source"]) == os.fsencode(folder) + b"/\xff\xfe.png"


# --- recognize: a bad .gnt record is skipped and counted; an empty file is reported -------------


def test_recognize_skips_a_bad_gnt_record_and_goes_on(tmp_path, capsys, tiny_bundle_path) -> None:
    rng = np.random.default_rng(1)
    gnt = tmp_path / "1001.gnt"
    write_gnt(gnt, [(ch, 255 - render_sample(ch, rng, pen_width=0.06)) for ch in TINY_CHARS * 2])
    data = bytearray(gnt.read_bytes())
    size0 = struct.unpack_from("<I", data, 0)[0]
    struct.pack_into("<H", data, size0 + 6, 0)  # record 1: width 0, its size field intact
    data += struct.pack("<I2sHH", 1000, b"\xb0\xa1", 30, 30)  # a last record cut short
    gnt.write_bytes(bytes(data))
    empty = tmp_path / "empty.gnt"
    empty.write_bytes(b"")
    assert main(["recognize", str(gnt), str(empty), "--model", str(tiny_bundle_path), "--format",
                 "jsonl", "--workers", "0"]) == 1  # fmt: skip
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in records] == [0, *range(2, 20)]  # 19 of 20 records kept
    assert f"{gnt}: byte {size0}: empty bitmap 0x" in err
    assert f"{gnt}: byte {len(data) - 10}: " in err and "(rest of file skipped)" in err
    assert f"{empty}: empty file (no records)" in err
    assert "3 failure(s)" in err
    assert "19 character(s)" in err


# --- SIGTERM to the whole group (`timeout`, a container stop): one line, exit 143 --------------


def _sigterm_group_after(cmd: list[str], started) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=REPO, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not started(proc):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(0.5)  # the DataLoader workers are busy now
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err


def test_group_sigterm_of_recognize_is_one_line(tmp_path, tiny_bundle_path) -> None:
    db = make_tiny_lmdb(tmp_path / "many.lmdb", per_class=4000, size=32)
    cmd = [sys.executable, "-m", "hccr.cli", "recognize", str(db), "--model", str(tiny_bundle_path),
           "--format", "jsonl", "--workers", "2", "--batch-size", "64", "--threads", "1"]  # fmt: skip
    rc, err = _sigterm_group_after(cmd, lambda proc: proc.stdout.readline() != "")
    assert rc == 143 and err == "hccr: terminated\n", err


def test_group_sigterm_of_train_is_one_line(tmp_path) -> None:
    db = make_tiny_lmdb(tmp_path / "train.lmdb", per_class=400, size=32)
    out = tmp_path / "run"
    fast = [a if a != "0" or FAST[i - 1] != "--workers" else "2" for i, a in enumerate(FAST)]
    cmd = [sys.executable, "-m", "hccr.cli", "train", "--data", str(db), "--val", str(db),
           *TINY_STUDENT, *fast, "--epochs", "50", "-o", str(out)]  # fmt: skip
    rc, err = _sigterm_group_after(cmd, lambda proc: (out / "metrics.jsonl").is_file())
    lines = [line for line in err.splitlines() if not line.startswith("epoch ")]
    assert rc == 143 and lines == ["hccr: terminated"], err


# --- a resumed epoch logs the mean loss of the whole epoch -------------------------------------


def test_resumed_epoch_logs_the_whole_epochs_loss(tmp_path, monkeypatch) -> None:
    train, val = (
        make_tiny_lmdb(tmp_path / "t.lmdb", per_class=16),
        make_tiny_lmdb(tmp_path / "v.lmdb", seed=1),
    )

    def args(out: Path, *more: str) -> list[str]:
        return ["train", "--data", str(train), "--val", str(val), *TINY_STUDENT, *FAST,
                "-o", str(out), "--epochs", "1", *more]  # fmt: skip

    whole = tmp_path / "whole"
    assert main(args(whole, "--checkpoint-minutes", "0")) == 0

    read_batch, calls = LmdbDataset.__getitems__, []

    def interrupt(self: LmdbDataset, indices: list[int]) -> list:
        if self.path == train:
            calls.append(indices)
            if len(calls) == 4:  # 80 samples, 5 steps: stop after 3, checkpointed at each
                raise KeyboardInterrupt
        return read_batch(self, indices)

    monkeypatch.setattr(LmdbDataset, "__getitems__", interrupt)
    cut = tmp_path / "cut"
    assert main(args(cut, "--checkpoint-minutes", "1e-9")) != 0
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["samples_done"] == 48
    assert main(args(cut, "--resume")) == 0
    (got,), (want,) = read_metrics(cut), read_metrics(whole)
    assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)


def test_full_disk_under_stdout_is_one_line_naming_it(tmp_path, tiny_bundle_path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    gnt = tmp_path / "1001.gnt"
    rng = np.random.default_rng(2)
    write_gnt(gnt, [(ch, 255 - render_sample(ch, rng, pen_width=0.06)) for ch in TINY_CHARS])
    cmd = [sys.executable, "-m", "hccr.cli", "recognize", str(gnt), "--model", str(tiny_bundle_path),
           "--format", "jsonl", "--workers", "0"]  # fmt: skip
    with open("/dev/full", "w") as full:
        proc = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, env=ENV,
                              cwd=REPO, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert _one_line(proc.stderr) == (
        "hccr recognize: error: /dev/full (standard output): cannot write: No space left on device"
    )
