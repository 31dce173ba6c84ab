"""Trajectory features: bad strokes give one-line answers, the ink channel matches the image
path, the direction channels follow the pen, and the LMDB point codec round-trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tiny_bundle import char_strokes

from data_tools.render import render_canvas
from hccr.lmdb_format import decode_points_sample, encode_points_sample
from hccr.preprocess import EmptyImageError, NormConfig, preprocess
from hccr.trajectory import (
    EmptyDrawingError,
    TrajectoryConfig,
    normalize_points,
    prepare_strokes,
)

CFG = TrajectoryConfig()


@pytest.mark.parametrize(
    ("strokes", "message"),
    [
        ([[(0, 0), (float("nan"), 3)]], "finite"),
        ([[(0, 0), (float("inf"), 3)]], "finite"),
        ([[(0, 0), (1e300, 3)]], "beyond"),
        ([[(0, 0, 1)]], "shape"),
        ([["a", "b"]], "number pairs"),
        (5, "list of strokes"),
        ([[(i, 0), (i, 1)] for i in range(5000)], "strokes"),
        ([[(i, i % 7) for i in range(70_000)]], "points"),
    ],
)
def test_bad_strokes_are_one_line_errors(strokes, message):
    with pytest.raises(ValueError, match=message) as info:
        prepare_strokes(strokes, CFG)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("strokes", [[], [[]], [[], []], np.zeros((0, 2))])
def test_empty_drawing(strokes):
    with pytest.raises(EmptyDrawingError, match="empty drawing"):
        prepare_strokes(strokes, CFG)
    assert issubclass(EmptyDrawingError, EmptyImageError)  # callers answer "empty" for both


def test_single_point_and_huge_coordinates_stay_in_the_box():
    dot = prepare_strokes([[(123456.0, -9e6)]], CFG)
    assert dot.shape == (9, 64, 64) and dot[0].max() == 255 and dot[1:].max() == 0
    ys, xs = np.nonzero(dot[0])
    assert 28 <= ys.mean() <= 36 and 28 <= xs.mean() <= 36
    # a far outlier shrinks the character, never draws outside the map
    maps = prepare_strokes([[(0, 0), (10, 10)], [(9e6, 9e6), (9e6 + 1, 9e6)]], CFG)
    assert maps.shape == (9, 64, 64) and maps[0].max() > 0


def test_thousands_of_strokes_are_bounded_and_fast():
    rng = np.random.default_rng(0)
    strokes = [rng.uniform(0, 1000, size=(30, 2)) for _ in range(1000)]
    maps = prepare_strokes(strokes, TrajectoryConfig(pen_up=True))
    assert maps.shape == (10, 64, 64) and maps[9].max() > 0


def test_ink_channel_matches_the_image_path():
    """The online model's channel 0 is what the image model sees for the same strokes (the
    panel's inking, then `hccr.preprocess`), so an image student can start it."""
    correlations = []
    for ch in "口水国大":
        strokes = [s * 300 + 50 for s in char_strokes(ch)]
        rgba = np.zeros((400, 400, 4), np.uint8)
        rgba[..., 3] = render_canvas(strokes, 400, 7)
        image = preprocess(rgba, NormConfig()).astype(float)
        ink = prepare_strokes(strokes, CFG)[0].astype(float)
        correlations.append(np.corrcoef(image.ravel(), ink.ravel())[0, 1])
    assert min(correlations) > 0.8, correlations


@pytest.mark.parametrize(
    ("direction", "channel"),
    [((1, 0), 1), ((1, 1), 2), ((0, 1), 3), ((-1, 0), 5), ((0, -1), 7)],
)
def test_direction_channels_follow_the_pen(direction, channel):
    dx, dy = direction
    maps = prepare_strokes([[(0, 0), (100 * dx, 100 * dy + 1e-9)]], CFG)
    energy = maps[1:9].reshape(8, -1).sum(axis=1)
    assert int(np.argmax(energy)) + 1 == channel
    assert energy[channel - 1] > 0.9 * energy.sum()


def test_halfway_direction_splits_between_two_channels():
    angle = math.radians(22.5)  # between +x (channel 1) and +x+y (channel 2)
    maps = prepare_strokes([[(0, 0), (100 * math.cos(angle), 100 * math.sin(angle))]], CFG)
    energy = maps[1:9].reshape(8, -1).sum(axis=1)
    assert energy[0] == pytest.approx(energy[1], rel=0.05)
    assert energy[2:].sum() == 0


def test_pen_up_channel_draws_the_moves_between_strokes():
    cfg = TrajectoryConfig(pen_up=True)
    maps = prepare_strokes([[(0, 0), (0, 100)], [(100, 0), (100, 100)]], cfg)
    assert maps.shape == (10, 64, 64)
    assert maps[9].max() == 255  # the move from (0, 100) up to (100, 0)
    assert maps[9, 32, 32] > 0 and maps[0, 32, 32] == 0


def test_config_round_trip_and_checks():
    cfg = TrajectoryConfig(size=48, pen_up=True)
    assert TrajectoryConfig.from_dict(cfg.to_dict()) == cfg and cfg.channels == 10
    with pytest.raises(ValueError, match="unknown trajectory settings"):
        TrajectoryConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="size"):
        TrajectoryConfig(size=4)


def test_points_codec_round_trips_within_a_sixteenth_pixel():
    points = normalize_points([s * 300 for s in char_strokes("水")], CFG)
    decoded, label, writer = decode_points_sample(encode_points_sample(points, 7, 1001))
    assert (label, writer) == (7, 1001) and len(decoded) == len(points)
    for a, b in zip(points, decoded, strict=True):
        assert np.abs(a - b).max() <= 1 / 32 + 1e-6


def test_resample_keeps_ends_and_equal_steps():
    from hccr.trajectory import resample

    out = resample([np.array([[0, 0], [10, 0], [10, 10.0]]), np.array([[5, 5.0]])], 3.0)
    line, dot = out
    assert line[0].tolist() == [0, 0] and line[-1].tolist() == [10, 10]
    steps = np.hypot(*np.diff(line, axis=0).T)
    assert len(line) == 8 and np.allclose(steps[[0, 1, 2, 4, 5, 6]], 20 / 7)
    assert dot.tolist() == [[5, 5]]
