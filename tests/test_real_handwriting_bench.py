"""bench/real_handwriting.py --baseline: two bundles compared sample by sample on the same real
sets (a tiny bundle and a folder of images made here; no peers, seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bench_script import load_bench
from PIL import Image
from tiny_bundle import TINY_CHARS, make_training_set


@pytest.fixture(scope="module")
def real_bench():
    return load_bench("real_handwriting")


def test_mcnemar_counts_the_discordant_samples_and_their_exact_p(real_bench) -> None:
    base = [True, True, False, False, True, False]
    model = [True, False, True, True, True, False]
    assert real_bench.mcnemar(base, model)[:2] == (2, 1)  # 2 only the model reads, 1 only base
    # the split of the 125 discordant samples behind the shipped student's writer 001 row
    gain, loss, p = real_bench.mcnemar([False] * 80 + [True] * 45, [True] * 80 + [False] * 45)
    assert (gain, loss) == (80, 45) and p == pytest.approx(0.00224, abs=5e-5)
    assert real_bench.mcnemar([True, False], [True, False])[2] == 1.0  # no discordant sample
    assert real_bench.mcnemar([False] * 10, [True] * 10)[2] == pytest.approx(2 / 2**10)


def _scans(folder: Path) -> Path:
    x, y = make_training_set(per_char=2, seed=5)
    for i, (image, label) in enumerate(zip(x[:, 0].numpy(), y.tolist(), strict=True)):
        char_dir = folder / TINY_CHARS[label]
        char_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray((255 - image * 255).round().astype("uint8")).save(char_dir / f"{i}.png")
    return folder


def test_baseline_compares_the_same_samples(
    real_bench, tiny_bundle_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    twin = shutil.copytree(tiny_bundle_path, tmp_path / "twin")
    scans = _scans(tmp_path / "scans")
    out = tmp_path / "real.json"
    argv = ["--model", str(tiny_bundle_path), "--baseline", str(twin), "--offline", str(scans),
            "--no-peers", "--json", str(out)]  # fmt: skip
    assert real_bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"beside the baseline {twin}" in printed
    row = json.loads(out.read_text())["rows"][0]
    n = len(TINY_CHARS) * 2
    assert row["hccr"]["n"] == n and "right" not in row["hccr"]  # no per-sample list in the JSON
    # the same weights: the same answers on every sample, so nothing to tell them apart
    assert row["baseline"] == {"top1": row["hccr"]["top1"], "gain": 0, "loss": 0, "mcnemar_p": 1.0}
    assert f"| offline scans | {n} |" in printed and "| 0 | 0 | 1 |" in printed


def test_model_metrics_prints_the_rows_real_handwriting_writes(
    real_bench, tiny_bundle_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """bench/model_metrics.py keeps real_handwriting's JSON rows and prints them for the card."""
    out = tmp_path / "real.json"
    argv = ["--model", str(tiny_bundle_path), "--offline", str(_scans(tmp_path / "scans")),
            "--no-peers", "--json", str(out)]  # fmt: skip
    assert real_bench.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    capsys.readouterr()
    load_bench("model_metrics").print_summary(
        {"model": "tiny", "measured": "today", "real_handwriting": {"rows": rows}, "cost": {}}
    )
    top1 = rows[0]["hccr"]["top1"]
    assert f"| real, offline scans | {len(TINY_CHARS) * 2} | {100 * top1:.1f}% |" in (
        capsys.readouterr().out
    )
