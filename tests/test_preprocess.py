"""Normalisation: the same character gives the same model input however it arrives."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from hccr.preprocess import EmptyImageError, NormConfig, normalize, preprocess, to_ink


def _cross(h: int = 100, w: int = 80, thickness: int = 6) -> np.ndarray:
    """An ink map (bright on 0) with an off-centre asymmetric shape."""
    ink = np.zeros((h, w), np.uint8)
    ink[20:70, 30 : 30 + thickness] = 255
    ink[40 : 40 + thickness, 10:60] = 255
    ink[60:66, 40:70] = 200
    return ink


@pytest.mark.parametrize("method", ["moment", "linear"])
def test_normalize_output_shape_range_and_margin(method):
    cfg = NormConfig(size=64, method=method)
    out = normalize(_cross(), cfg)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert out.max() == 255
    assert (
        out[:2].max() == 0
        and out[-2:].max() == 0
        and out[:, :2].max() == 0
        and out[:, -2:].max() == 0
    )


def test_moment_normalisation_centres_the_centroid():
    ink = np.zeros((100, 100), np.uint8)  # a frame, heavier on the left: spread like a character,
    ink[10:90, 10:25] = 255  # with its centroid left of the bounding-box centre
    ink[10:90, 87:90] = 255
    ink[10:13, 10:90] = 255
    ink[87:90, 10:90] = 255
    out = normalize(ink, NormConfig(method="moment")).astype(float)
    ys, xs = np.indices(out.shape)
    cy, cx = (out * ys).sum() / out.sum(), (out * xs).sum() / out.sum()
    assert abs(cy - 31.5) < 1.5 and abs(cx - 31.5) < 1.5


def test_normalize_ignores_translation_and_scale():
    cfg = NormConfig()
    small = _cross()
    big = np.zeros((400, 400), np.uint8)
    big[100:300, 150:310] = np.asarray(Image.fromarray(small).resize((160, 200), Image.NEAREST))
    a, b = normalize(small, cfg).astype(int), normalize(big, cfg).astype(int)
    assert np.abs(a - b).mean() < 12  # resampling differences only


def test_polarity_alpha_and_palette_inputs_agree():
    cfg = NormConfig()
    ink = _cross()
    ref = preprocess(ink, cfg)  # light on dark
    dark_on_light = Image.fromarray(255 - ink)
    rgba = np.zeros((*ink.shape, 4), np.uint8)  # black ink on a transparent canvas
    rgba[..., 3] = ink
    # opaque white paper with a few fully transparent pixels (seen in converted HWDB PNGs)
    paper = np.dstack(
        [np.repeat((255 - ink)[..., None], 3, axis=2), np.full(ink.shape, 255, np.uint8)]
    )
    paper[:5, :5, 3] = 0
    for image in (
        Image.fromarray(paper),
        dark_on_light,
        dark_on_light.convert("RGB"),
        dark_on_light.convert("P"),
        Image.fromarray(rgba),
    ):
        got = preprocess(image, cfg)
        assert np.abs(got.astype(int) - ref).mean() < 2, image.mode


def test_grey_scan_background_is_removed():
    scan = np.full((60, 60), 230, np.uint8)  # grey paper
    scan[10:50, 28:33] = 60
    ink = to_ink(scan)
    assert ink[0, 0] == 0 and ink[30, 30] > 150


@pytest.mark.parametrize("image", [np.zeros((50, 50), np.uint8), np.full((50, 50), 255, np.uint8)])
def test_empty_image_raises(image):
    with pytest.raises(EmptyImageError):
        preprocess(image, NormConfig())


def test_config_round_trip_and_validation():
    cfg = NormConfig(size=48, method="linear")
    assert NormConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown normalisation 'x'"):
        NormConfig(method="x")
    with pytest.raises(ValueError, match="unknown normalisation settings"):
        NormConfig.from_dict({"size": 64, "colour": 1})


@pytest.mark.parametrize("colour", [0, 90])
def test_transparent_canvas_equals_its_composite_over_white(colour):
    """The canvas shortcut (opaque box only) gives exactly what compositing the whole canvas does."""
    alpha = np.zeros((400, 400), np.uint8)
    cv2.line(alpha, (120, 100), (260, 300), 255, 14, cv2.LINE_AA)
    cv2.line(alpha, (100, 220), (300, 200), 255, 14, cv2.LINE_AA)
    rgba = np.zeros((400, 400, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = colour, alpha
    a = alpha.astype(np.uint16)
    over_white = ((colour * a + 255 * (255 - a)) // 255).astype(np.uint8)
    assert np.array_equal(preprocess(rgba, NormConfig()), preprocess(over_white, NormConfig()))
