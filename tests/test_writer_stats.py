"""Fitted writer statistics: the shipped file loads, sampling stays in range, the fit script
rebuilds it from a `.pot` (first GB1 half only), and every stroke sample carries enough ink."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_tools import fit_writer_stats, styles
from data_tools.strokes import load_medians
from data_tools.synth import SampleMaker, SynthConfig, sample_rng
from data_tools.writer_stats import WRITER_STATS_PATH, WriterStats, WriterStatsError
from hccr.casia import write_pot
from hccr.charset import Charset
from hccr.preprocess import NormConfig

MIN_INK = 0.02  # of the normalised image's pixels above mid-grey: never a near-blank sample


def test_shipped_stats_load_and_draws_stay_in_range() -> None:
    stats = WriterStats.load()
    u = np.random.default_rng(0).random(10_000)
    for (group, key), table in stats.tables.items():
        v = stats.draw(group, key, u)
        assert table[0] <= v.min() and v.max() <= table[-1], (group, key)
    for group, keys in stats.GROUPS.items():  # the batched draw is the same inverse CDF
        uu = np.random.default_rng(1).random((len(keys), 100))
        ref = [stats.draw(group, k, uu[i]) - stats.medians[(group, k)] for i, k in enumerate(keys)]
        assert np.allclose(stats.deviations(group, uu), ref)
    rates = stats.join_rate(np.linspace(0.0, 3.0, 50))
    assert rates.min() >= 0 and rates.max() <= 1
    assert stats.join_rate(np.array([0.05]))[0] > stats.join_rate(np.array([1.5]))[0]
    data = json.loads(WRITER_STATS_PATH.read_text())
    assert "classes 0-1876" in data["source"]  # the fit half only, by its own record


def test_malformed_stats_name_the_file(tmp_path: Path) -> None:
    data = json.loads(WRITER_STATS_PATH.read_text())
    del data["stroke"]["bow"]
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(WriterStatsError, match="w.json"):
        WriterStats.load(bad)
    data = json.loads(WRITER_STATS_PATH.read_text())
    data["char"]["slant"] = data["char"]["slant"][::-1]
    bad.write_text(json.dumps(data))
    with pytest.raises(WriterStatsError, match="not sorted"):
        WriterStats.load(bad)


def test_perturbed_strokes_stay_in_a_bounded_box() -> None:
    medians = load_medians()
    for ch in "永字一藏":
        template = styles.StrokeTemplate.from_medians(medians.get(ch), medians.radicals(ch))
        for s in range(200):
            strokes, widths = styles.perturb_strokes(template, np.random.default_rng([1, s]))
            points = np.concatenate(strokes)
            assert np.isfinite(points).all() and points.min() > -0.6 and points.max() < 1.6
            assert all(len(a) == len(b) for a, b in zip(strokes, widths, strict=True))
            assert 0.4 <= min(w.min() for w in widths) and max(w.max() for w in widths) <= 1.3


def test_a_writers_habits_hold_over_its_samples() -> None:
    """`habits=` (bench/adaptation_synth.py's habit writers): every sample of a writer keeps its
    cursive knob (a neat writer never joins strokes, a cursive one joins many), while samples
    that draw their own vary; and the call takes the same draws from the generator."""
    medians = load_medians()
    template = styles.StrokeTemplate.from_medians(medians.get("永"), medians.radicals("永"))

    def pen_downs(habits) -> np.ndarray:
        return np.array([len(styles.perturb_strokes(template, np.random.default_rng([3, s]),
                                                    habits)[0]) for s in range(60)])  # fmt: skip

    habits = np.random.default_rng(0).random(17)
    neat, cursive = habits.copy(), habits.copy()
    neat[0], cursive[0] = 0.0, 0.99  # the cursive knob, one of styles.HABITS
    assert (pen_downs(neat) == 5).all()  # 永 has five strokes
    assert pen_downs(cursive).mean() < pen_downs(None).mean() - 0.5
    assert pen_downs(None).std() > 0.5
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    styles.perturb_strokes(template, rng_a)
    styles.perturb_strokes(template, rng_b, habits)
    assert rng_a.random() == rng_b.random()  # the same draws: seeds keep their samples


@pytest.mark.parametrize("seed", [0, 1])
def test_no_stroke_sample_has_too_little_ink(seed: int) -> None:
    maker = SampleMaker([], SynthConfig(styles={"strokes": 1.0}, norm=NormConfig(size=64)))
    gb1 = Charset.gb1()
    for k in range(0, len(gb1), 47):  # 80 classes across GB1, all stroke counts
        image = maker.make_normalized(gb1.char(k), sample_rng(seed, "train", k, 0))[0]
        assert (image > 128).mean() >= MIN_INK, gb1.char(k)


def _tablet(strokes: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    # medians (unit box) as a tablet would record them: 5,000 units, slanted, a little noise
    a = np.array([[1.0, 0.15], [-0.05, 0.95]]) * 5000
    return [np.rint(s @ a.T + 600 + rng.normal(0, 8, s.shape)).astype(np.int16) for s in strokes]


def test_fit_script_rebuilds_stats_from_a_pot_first_half_only(tmp_path: Path) -> None:
    gb1, medians = Charset.gb1(), load_medians()
    rng = np.random.default_rng(0)
    samples = []
    for k in range(0, 1877, 60):  # first half: fitted; strokes 0 and 1 joined into one
        m = medians.get(gb1.char(k))
        if len(m) >= 3:
            m = [np.concatenate([m[0], m[1]]), *m[2:]]
        samples.append((gb1.char(k), _tablet(m, rng)))
    second = [(gb1.char(k), _tablet(medians.get(gb1.char(k)), rng)) for k in range(1877, 3755, 200)]
    pot = tmp_path / "w.pot"
    write_pot(pot, samples + second)
    out = tmp_path / "stats.json"
    assert fit_writer_stats.main([str(pot), "-o", str(out)]) == 0
    stats = WriterStats.load(out)  # loads: the shape the generator needs
    data = json.loads(out.read_text())
    assert data["characters"]["read"] == len(samples)  # the second half is never read
    assert data["characters"]["aligned"] >= 0.8 * len(samples)
    assert stats.medians[("char", "slant")] > 0.05  # the tablet's slant is found
    # the joined first pair of every character shows up as joins at small gaps, not elsewhere
    assert max(stats.join_rates) > 0.2 and not list(tmp_path.glob("*.partial"))
