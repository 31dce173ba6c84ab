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


def _scribbles(n: int, seed: int) -> list[np.ndarray]:
    """Ink maps of varied size, stroke width and grey level, some touching the border."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(3, 160, size=2))
        ink = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 8))):
            pts = rng.integers(-5, [w + 5, h + 5], size=(3, 2)).astype(np.int32)
            level, width = int(rng.integers(30, 256)), int(rng.integers(1, 6))
            cv2.polylines(ink, [pts], False, level, width, cv2.LINE_AA)
        out.append(ink)
    return out


def test_resampling_matches_opencv_warp_affine():
    # The compiled resampler stands in for cv2.warpAffine(INTER_LINEAR, zero border): at most
    # one grey level apart, and that on about 1 pixel in 100,000.
    from hccr.norm_kernels import warp_scaled

    rng = np.random.default_rng(0)
    differing = total = 0
    for ink in _scribbles(300, seed=1):
        for size in (32, 64, 96):
            sx = rng.uniform(0.2, 2.0)
            sy = sx * rng.uniform(0.8, 1.25)
            m = np.array([[sx, 0, rng.uniform(-30, 30)], [0, sy, rng.uniform(-30, 30)]], np.float32)
            want = cv2.warpAffine(ink, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
            got = warp_scaled(ink, m[0, 0], m[0, 2], m[1, 1], m[1, 2], size)
            diff = np.abs(want.astype(int) - got)
            assert diff.max() <= 1
            differing += int((diff > 0).sum())
            total += diff.size
    assert differing <= total * 2e-5, f"{differing} of {total} pixels differ"


def test_box_and_moments_equal_opencv():
    from hccr.norm_kernels import ink_box_moments

    for ink in [*_scribbles(200, seed=2), np.zeros((5, 7), np.uint8)]:
        x0, y0, w, h, *sums = ink_box_moments(ink, 24)
        assert (x0, y0, w, h) == cv2.boundingRect((ink >= 24).view(np.uint8))
        if w:
            m = cv2.moments(ink[y0 : y0 + h, x0 : x0 + w], binaryImage=False)
            assert sums == [m["m00"], m["m10"], m["m01"], m["m20"], m["m02"]]


def test_grey_stretch_maps_the_ink_90th_percentile_to_white():
    from hccr.norm_kernels import STRETCH_LUTS, stretch_inplace

    rng = np.random.default_rng(3)
    for _ in range(200):
        image = (rng.random((64, 64)) ** 3 * rng.integers(20, 256)).astype(np.uint8)
        ink = np.sort(image[image >= 12])
        # the smallest level with at least 90% of the ink pixels at or below it
        want = int(ink[max(0, int(np.ceil(0.9 * len(ink))) - 1)]) if len(ink) else 12
        out = image.copy()
        assert stretch_inplace(out, 12, 0.9, STRETCH_LUTS) == want
        if want < 250:
            assert out.max() == 255 and np.array_equal(out, STRETCH_LUTS[want][image])
        else:
            assert np.array_equal(out, image)


def test_scan_background_is_its_median_level():
    from hccr.preprocess import ink_from_white_background

    rng = np.random.default_rng(4)
    for _ in range(100):
        paper = int(rng.integers(150, 256))
        grey = np.full(tuple(int(v) for v in rng.integers(5, 90, size=2)), paper, np.uint8)
        grey[rng.random(grey.shape) < 0.3] = rng.integers(0, 100)
        inverted = 255 - grey.astype(int)
        # the (lower) median level: at least half the pixels are at or below it
        median = np.sort(inverted.ravel())[int(np.ceil(0.5 * inverted.size)) - 1]
        want = np.clip(inverted - median, 0, 255)
        assert np.array_equal(ink_from_white_background(grey), want)
