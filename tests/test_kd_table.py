"""bench/kd_table.py: one run gives every row its columns, the ratios to the first row, and the
targets against the student-alone row (tiny bundles and a tiny held-out LMDB, seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bench_script import load_bench
from tiny_bundle import TINY_CHARS, TINY_NORM, make_training_set

from hccr.lmdb_format import LmdbWriter


@pytest.fixture(scope="module")
def kd_table():
    return load_bench("kd_table")


def _heldout(out: Path) -> Path:
    x, y = make_training_set(per_char=3, seed=7)  # seeds the tiny bundle never trained on
    with LmdbWriter(out) as writer:
        for image, label in zip((x[:, 0] * 255).round().byte().numpy(), y.tolist(), strict=True):
            writer.add(np.ascontiguousarray(image), label)
        writer.finish({"charset": list(TINY_CHARS), "num_classes": len(TINY_CHARS),
                       "image_size": TINY_NORM.size, "norm": TINY_NORM.to_dict(),
                       "sources": {"tiny": len(y)}})  # fmt: skip
    return out


def test_one_run_gives_rows_ratios_and_targets(
    kd_table, tiny_bundle_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    alone = shutil.copytree(tiny_bundle_path, tmp_path / "alone")
    out = tmp_path / "kd.json"
    args = ["--row", f"teacher={tiny_bundle_path}", "--row", f"student alone={alone}",
            "--alone", "student alone", "--synth", str(_heldout(tmp_path / "held.lmdb")),
            "--drawn-limit", "3", "--repeats", "2", "--json", str(out)]  # fmt: skip
    assert kd_table.main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    teacher, student = report["rows"]
    assert [teacher["name"], student["name"]] == ["teacher", "student alone"]
    for row in report["rows"]:
        assert row["synthetic"]["n"] == 3 * len(TINY_CHARS) and row["synthetic"]["top1"] > 0.8
        assert row["drawn"]["n"] == 3 and row["backend"] in ("onnx", "torch")
        assert row["params"] > 0 and row["flops"] > 0 and row["ms_b1"] > 0 and row["ms_b64"] > 0
    assert student["flops"] == teacher["flops"] and student["synthetic"] == teacher["synthetic"]
    assert "| student alone | torch |" in printed or "| student alone | onnx |" in printed
    assert "| 1.0x | 1.0x |" in printed  # the same bundle twice: FLOPs and bytes ratios of 1
    assert any(
        "teacher over student alone, real mean: not measured" in t for t in report["targets"]
    )
    assert any("FLOPs ÷ teacher: 1.0x (goal >= 8x): not met" in t for t in report["targets"])


def test_rows_of_other_charsets_are_refused(
    kd_table, tiny_bundle_path: Path, tmp_path: Path
) -> None:
    other = shutil.copytree(tiny_bundle_path, tmp_path / "other")
    (other / "charset.txt").write_text("\n".join(reversed(TINY_CHARS)) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="charset differs"):
        kd_table.main(["--row", f"a={tiny_bundle_path}", "--row", f"b={other}"])
