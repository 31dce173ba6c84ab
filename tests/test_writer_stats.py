"""Fitted writer statistics: the shipped file loads, sampling stays in range, the fit script
rebuilds it from a `.pot` (first GB1 half only), and every stroke sample carries enough ink;
synthetic writers keep their habits (writer-level and stroke-level) over their samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_tools import fit_writer_stats, styles
from data_tools.strokes import load_medians
from data_tools.synth import SampleMaker, SynthConfig, sample_rng
from data_tools.writer_habits import KINDS, StrokeHabits, stroke_kinds
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


def test_stroke_kinds_from_the_medians() -> None:
    medians = load_medians()

    def kinds(ch: str) -> list[str]:
        t = styles.StrokeTemplate.from_medians(medians.get(ch))
        return [KINDS[k] for k in stroke_kinds(t.points, t.starts)]

    assert kinds("十") == ["horizontal", "vertical"]
    assert kinds("八") == ["left-falling", "right-falling"]
    assert kinds("乙") == ["turning"]
    assert kinds("永") == ["short", "turning", "turning", "left-falling", "right-falling"]


def test_a_writers_stroke_habits_hold_over_its_samples() -> None:
    """`stroke_habits=` (bench/adaptation_synth.py's stroke-habits writers): a writer whose
    horizontals run long draws them longer than one whose horizontals run short, in every
    character and over independent draws; its join factors hold too."""
    medians = load_medians()
    stats = WriterStats.load()
    habits = np.random.default_rng(0).random(17)
    habits[0] = 0.99  # a loose hand: the stroke departures at their widest
    length = list(stats.GROUPS["stroke"]).index("log_length")

    def writer(u: float) -> StrokeHabits:  # only the horizontals' length is biased
        bias = np.zeros((len(KINDS), 7))
        bias[KINDS.index("horizontal"), length] = stats.deviations("stroke", np.full((7, 1), u))[
            length, 0
        ]
        return StrokeHabits(bias, np.ones(len(stats.join_gaps)))

    def widths(ch: str, habit: StrokeHabits, seed: int) -> np.ndarray:
        t = styles.StrokeTemplate.from_medians(medians.get(ch))
        out = [styles.perturb_strokes(t, np.random.default_rng([seed, s]), habits, habit)[0]
               for s in range(30)]  # fmt: skip
        return np.array([np.ptp(np.concatenate(strokes)[:, 0]) for strokes in out])

    for ch in "一二三":  # horizontals only: the ink's width is their length
        long, short = widths(ch, writer(0.95), 1), widths(ch, writer(0.05), 2)
        assert long.mean() > 1.2 * short.mean(), ch
        assert (long > np.median(short)).mean() > 0.7, ch
    template = styles.StrokeTemplate.from_medians(medians.get("永"), medians.radicals("永"))
    never = StrokeHabits(np.zeros((len(KINDS), 7)), np.zeros(len(stats.join_gaps)))
    pen_downs = [len(styles.perturb_strokes(template, np.random.default_rng([3, s]), habits,
                                            never)[0]) for s in range(30)]  # fmt: skip
    assert pen_downs == [5] * 30  # a loose hand that never joins: every pen lift stays


def test_stroke_habits_leave_the_default_samples_alone() -> None:
    """The generator's samples (no habits) are those of before stroke habits existed (values
    recorded from that code), and a stroke-habits call takes the same draws."""
    medians = load_medians()
    template = styles.StrokeTemplate.from_medians(medians.get("永"), medians.radicals("永"))
    strokes, widths = styles.perturb_strokes(template, np.random.default_rng(2026))
    assert [len(s) for s in strokes] == [3, 15, 14, 6, 11]
    points = np.concatenate(strokes)
    assert np.allclose(points.sum(0), [23.14281519, 26.10747938], rtol=0, atol=1e-7)
    assert np.allclose(points[:2], [[0.4380497, 0.04484382], [0.4873248, 0.05989812]], atol=1e-7)
    assert np.isclose(np.concatenate(widths).sum(), 51.547455976995984, rtol=0, atol=1e-7)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    styles.perturb_strokes(template, rng_a)
    styles.perturb_strokes(template, rng_b, None, StrokeHabits.draw(np.random.default_rng(0)))
    assert rng_a.random() == rng_b.random()


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
