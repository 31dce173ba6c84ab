"""`hccr recognize`: images, folders, .gnt and .lmdb in; table / csv / jsonl out; bad input reported."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_bundle import TINY_CHARS, render_sample

from hccr.casia import write_gnt
from hccr.cli import main
from hccr.lmdb_format import LmdbWriter
from hccr.preprocess import NormConfig, normalize


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Images (in a nested folder), a .gnt and an .lmdb of the tiny characters."""
    root = tmp_path_factory.mktemp("recognize-inputs")
    rng = np.random.default_rng(7)
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    for i, ch in enumerate(TINY_CHARS):
        folder = images / "sub" if i % 2 else images
        Image.fromarray(255 - render_sample(ch, rng, pen_width=0.06)).save(folder / f"{i:02d}.png")
    gnt = root / "a.gnt"
    write_gnt(gnt, [(ch, 255 - render_sample(ch, rng, pen_width=0.06)) for ch in TINY_CHARS])
    lmdb = root / "b.lmdb"
    norm = NormConfig(size=64)  # not the bundle's 32: samples must be renormalised
    with LmdbWriter(lmdb) as w:
        for label, ch in enumerate(TINY_CHARS):
            w.add(normalize(render_sample(ch, rng, pen_width=0.06), norm), label)
        w.finish({"charset": list(TINY_CHARS), "num_classes": len(TINY_CHARS),
                  "image_size": norm.size, "norm": norm.to_dict(), "sources": {"test": 10}})  # fmt: skip
    return {"images": images, "gnt": gnt, "lmdb": lmdb, "root": root}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["recognize", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_jsonl_has_the_contract_fields(capsys, inputs, tiny_bundle_path: Path) -> None:
    rc, out, err = _run(capsys, str(inputs["gnt"]), str(inputs["lmdb"]), str(inputs["images"]),
                        "--model", str(tiny_bundle_path), "--format", "jsonl", "--topk", "3")  # fmt: skip
    assert rc == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 30
    for r in records:
        assert set(r) == {"source", "index", "label", "top"}
        assert len(r["top"]) == 3 and set(r["top"][0]) == {"char", "prob"}
    gnt = [r for r in records if r["source"] == str(inputs["gnt"])]
    assert [r["index"] for r in gnt] == list(range(10))
    assert [r["label"] for r in gnt] == list(TINY_CHARS)
    assert [r["top"][0]["char"] for r in gnt] == list(TINY_CHARS)
    lmdb = [r for r in records if r["source"] == str(inputs["lmdb"])]
    assert [r["top"][0]["char"] for r in lmdb] == [r["label"] for r in lmdb] == list(TINY_CHARS)
    images = [r for r in records if r["source"].endswith(".png")]
    assert all(r["label"] is None and r["index"] is None for r in images)
    by_name = {Path(r["source"]).stem: r["top"][0]["char"] for r in images}
    assert by_name == {f"{i:02d}": ch for i, ch in enumerate(TINY_CHARS)}
    assert "accuracy on 20 labelled: top-1 100.00%" in err


def test_labels_outside_the_charset_are_not_scored(capsys, tiny_bundle_path, tmp_path) -> None:
    # a .gnt of another charset: its characters are recognised, but cannot count as errors
    rng = np.random.default_rng(3)
    gnt = tmp_path / "mixed.gnt"
    outside = "永" if "永" not in TINY_CHARS else "龍"
    samples = [(ch, 255 - render_sample(ch, rng, pen_width=0.06)) for ch in TINY_CHARS[:4]]
    write_gnt(gnt, [*samples, (outside, samples[0][1])])
    rc, out, err = _run(capsys, str(gnt), "--model", str(tiny_bundle_path), "--format", "jsonl")
    assert rc == 0, err
    assert len(out.splitlines()) == 5
    assert "accuracy on 4 labelled: top-1 100.00%" in err
    assert "1 labelled character(s) outside the model's charset" in err


def test_csv_parses_with_one_column_pair_per_candidate(capsys, inputs, tiny_bundle_path) -> None:
    rc, out, err = _run(capsys, str(inputs["gnt"]), "--model", str(tiny_bundle_path),
                        "--format", "csv", "--topk", "2")  # fmt: skip
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["source", "index", "label", "char1", "prob1", "char2", "prob2"]
    assert [r["char1"] for r in rows] == [r["label"] for r in rows] == list(TINY_CHARS)
    assert all(0 <= float(r["prob2"]) <= float(r["prob1"]) <= 1 for r in rows)


def test_table_has_a_header_and_one_row_per_character(capsys, inputs, tiny_bundle_path) -> None:
    rc, out, err = _run(capsys, str(inputs["images"]), "--model", str(tiny_bundle_path),
                        "--format", "table")  # fmt: skip
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SOURCE", "INDEX", "LABEL"]
    assert len(lines) == 11
    for line in lines[1:]:
        source, index, label, top1 = line.split()[:4]
        ch = TINY_CHARS[int(Path(source).stem)]
        assert (index, label, top1) == ("-", "-", ch)


def test_workers_keep_input_order(capsys, inputs, tiny_bundle_path: Path) -> None:
    argv = [str(inputs["lmdb"]), str(inputs["gnt"]), str(inputs["lmdb"]), "--model",
            str(tiny_bundle_path), "--format", "jsonl", "--batch-size", "3"]  # fmt: skip
    rc, serial, _ = _run(capsys, *argv, "--workers", "0")
    assert rc == 0
    rc, parallel, _ = _run(capsys, *argv, "--workers", "2")
    assert rc == 0
    keys = [(r["source"], r["index"]) for r in map(json.loads, parallel.splitlines())]
    assert keys == [(str(inputs["lmdb"]), i) for i in range(10)] + [
        (str(inputs["gnt"]), i) for i in range(10)
    ] + [(str(inputs["lmdb"]), i) for i in range(10)]
    assert parallel == serial


def test_bad_inputs_get_a_line_each_and_a_failing_exit(capsys, inputs, tiny_bundle_path, tmp_path):
    good = inputs["images"] / "00.png"
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_bytes(b"this is not a png")
    Image.new("L", (40, 40), 255).save(folder / "blank.png")  # no ink
    truncated = tmp_path / "truncated.gnt"
    truncated.write_bytes(inputs["gnt"].read_bytes()[:-100])  # last record cut short
    missing = tmp_path / "missing.png"
    rc, out, err = _run(capsys, str(good), str(folder), str(truncated), str(missing),
                        "--model", str(tiny_bundle_path), "--format", "jsonl")  # fmt: skip
    assert rc == 1
    records = [json.loads(line) for line in out.splitlines()]
    # the good image and the 9 intact records of the truncated file are still recognised
    assert [r["source"] for r in records] == [str(good)] + [str(truncated)] * 9
    assert f"{folder / 'fake.png'}: not an image file" in err
    assert f"{folder / 'blank.png'}: empty image" in err
    assert f"{folder}: skipped 1 file(s)" in err
    assert f"{missing}: no such file or folder" in err
    offset = (inputs["gnt"].stat().st_size // 10) * 9  # all records have the same size
    assert f"{truncated}: byte {offset}:" in err
    assert "4 failure(s)" in err


def test_a_corrupt_lmdb_value_is_one_line_and_the_rest_is_read(capsys, tiny_bundle_path, tmp_path):
    rng = np.random.default_rng(5)
    db = tmp_path / "corrupt.lmdb"
    norm = NormConfig(size=32)
    with LmdbWriter(db) as w:
        for label, ch in enumerate(TINY_CHARS[:3]):
            w.add(normalize(render_sample(ch, rng, pen_width=0.06), norm), label)
        w.add_encoded(struct.pack("<ii", 3, -1) + b"not a zlib stream", 3)
        w.finish({"charset": list(TINY_CHARS), "num_classes": len(TINY_CHARS),
                  "image_size": norm.size, "norm": norm.to_dict(), "sources": {"test": 4}})  # fmt: skip
    rc, out, err = _run(capsys, str(db), "--model", str(tiny_bundle_path), "--format", "jsonl")
    assert rc == 1
    assert [json.loads(line)["index"] for line in out.splitlines()] == [0, 1, 2]
    assert f"{db}: sample 3:" in err
    assert "1 failure(s)" in err


def test_not_a_gnt_is_one_line_naming_the_file(capsys, tiny_bundle_path, tmp_path) -> None:
    bogus = tmp_path / "bogus.gnt"
    bogus.write_bytes(b"\x00" * 5)
    rc, out, err = _run(capsys, str(bogus), "--model", str(tiny_bundle_path))
    assert rc == 1 and out == ""
    assert f"{bogus}: byte 0:" in err


def test_missing_model_is_a_one_line_error(capsys, inputs, tmp_path) -> None:
    rc, out, err = _run(capsys, str(inputs["gnt"]), "--model", str(tmp_path / "nope"))
    assert rc == 1
    assert err.strip().count("\n") == 0 and "nope" in err
