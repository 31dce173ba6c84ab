"""bench/adaptation_prerelu.py: one run scores the four maps (before or after the feature
layer's ReLU, class means or classifier rows) on a `.pot` writer with class means from a packed
LMDB (tiny online bundle, seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench_script import load_bench
from test_online import pot_samples
from tiny_bundle import TINY_CHARS

from hccr.casia import write_pot

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench():
    return load_bench("adaptation_prerelu", "adaptation_prerelu_bench")


def _pot(path: Path, seeds: range) -> Path:
    write_pot(path, [s for seed in seeds for s in pot_samples(TINY_CHARS, seed=seed)])
    return path


def _packed(tmp_path: Path, name: str, seeds: range) -> Path:
    """A trajectory LMDB of the tiny characters written with `seeds`, packed by `hccr-data pack`."""
    db = tmp_path / f"{name}.lmdb"
    subprocess.run([sys.executable, "-m", "data_tools.cli", "pack", str(_pot(tmp_path / f"{name}.pot", seeds)),
                    "-o", str(db), "--no-progress", "--input", "strokes"], check=True)  # fmt: skip
    return db


def test_one_run_scores_the_four_maps(
    bench, tiny_online_bundle_path: Path, tmp_path: Path, monkeypatch
) -> None:
    means = _packed(tmp_path, "means", range(6, 9))
    out = tmp_path / "rows.json"
    argv = ["adaptation_prerelu.py", "--model", str(tiny_online_bundle_path),
            "--pot", str(_pot(tmp_path / "001.pot", range(6))), "--means", str(means),
            "--ks", "10", "--repeats", "2", "--prior", "5", "--json", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    rows = json.loads(out.read_text())
    assert [(r["map"], r["mode"]) for r in rows] == [
        (m, mode) for mode in ("supervised", "unsupervised") for m in bench.MAPS
    ]
    # classes 5-9 of the tiny charset are tested, 6 samples each; 0-4 adapt
    assert all(r["n_test"] == 30 and r["draws"] == 2 and r["k"] == 10 for r in rows)
    assert rows[0]["top1_plain"] >= 0.8
    assert all(0.0 <= r["top1_adapted"] <= 1.0 for r in rows)
