"""bench/adaptation.py: one run measures an image and an online bundle on the same `.pot`
writer, each reading it as `hccr adapt` does (pen-rendered images; trajectory maps drawn with
the online bundle's TrajectoryConfig), adapting on the first half of the charset and testing on
the second (tiny bundles, a .pot made here, seconds)."""

from __future__ import annotations

import json
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
    return load_bench("adaptation", "adaptation_bench")


def test_one_run_measures_image_and_online_bundles(
    bench, tiny_bundle_path: Path, tiny_online_bundle_path: Path, tmp_path: Path, monkeypatch
) -> None:
    pot = tmp_path / "001.pot"
    write_pot(pot, [s for seed in range(6) for s in pot_samples(TINY_CHARS, seed=seed)])
    out = tmp_path / "rows.json"
    argv = ["adaptation.py", "--model", str(tiny_bundle_path), str(tiny_online_bundle_path),
            "--pot", str(pot), "--ks", "10", "--repeats", "2", "--prior", "5", "--json", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    results = json.loads(out.read_text())
    assert [r["input"] for r in results] == ["image", "strokes"]
    for result in results:
        rows = result["rows"]
        assert [(r["k"], r["mode"]) for r in rows] == [(10, "supervised"), (10, "unsupervised")]
        # classes 5-9 of the tiny charset are tested, 6 samples each; 0-4 adapt
        assert all(r["n_test"] == 30 and r["draws"] == 2 for r in rows)
        assert all(r["model"] == result["model"] for r in rows)
        # both read the writer: the online one through its maps (an image drawn as one ink
        # channel would not even fit its 9-channel input)
        assert rows[0]["top1_plain"] >= 0.8
        assert all(0.0 <= r["top1_adapted"] <= 1.0 for r in rows)
