"""Character normalisation: the one place where pixels become model input.

Packing (`hccr-data pack`, `hccr-data synth`) and inference (`Recognizer`, the demo) both call
`normalize`, and every LMDB and bundle records its `NormConfig`, so training and inference cannot
disagree. Images are "ink maps": uint8, background 0, ink bright.

Moment normalisation follows C.-L. Liu et al., "Handwritten digit recognition: investigation of
normalization and feature extraction techniques", Pattern Recognition 37(2), 2004: the centroid
goes to the centre of the box and the character is scaled so that 4 standard deviations of its
ink distribution fill the box, which is robust to stray strokes and long tails that make the
bounding box (linear normalisation) jumpy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np
from numba import njit
from PIL import Image

NORM_METHODS = ("moment", "linear")
DEFAULT_IMAGE_SIZE = 64  # the side S of every shipped model's input, and the tools' default
# ink below this grey level is background noise: when cropping, and when telling whether an image
# holds any ink at all
INK_THRESHOLD = 24
_MAX_INPUT_SIDE = (
    512  # larger inputs are shrunk first: a 64x64 target gains nothing from more pixels
)


class EmptyImageError(ValueError):
    """An image with no ink to recognise."""


@dataclass(frozen=True)
class NormConfig:
    """How a character image is mapped into the model's S x S input."""

    size: int = DEFAULT_IMAGE_SIZE  # side of the normalised image (S)
    method: str = "moment"  # "moment" (centroid + second moments) or "linear" (bounding box)
    margin: int = 4  # blank pixels kept on each side at size 64; scaled with `size`
    moment_span: float = 4.0  # moment box side = span * std of ink along each axis (Liu 2004)
    stretch: bool = (
        True  # scale grey levels so strong ink is 255: scans (ink 70..250) look like pen input
    )
    ink_threshold: int = INK_THRESHOLD  # ink below this level is background noise when cropping

    def __post_init__(self) -> None:
        if self.method not in NORM_METHODS:
            raise ValueError(
                f"unknown normalisation {self.method!r}; known: {', '.join(NORM_METHODS)}"
            )
        if not 8 <= self.size <= 512:
            raise ValueError(f"image size {self.size} out of range 8..512")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NormConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown normalisation settings: {', '.join(sorted(unknown))}")
        return cls(**d)


def ink_from_white_background(grey: np.ndarray) -> np.ndarray:
    """Dark-on-light grey (e.g. a `.gnt` bitmap) -> ink map: inverted, background level removed."""
    return _ink_map(_as_uint8_2d(grey), True)


def _remove_background(ink: np.ndarray) -> np.ndarray:
    return _ink_map(_as_uint8_2d(ink), False)


def _as_uint8_2d(image: np.ndarray) -> np.ndarray:
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {image.dtype} of shape {image.shape}")
    return image


@njit(cache=True, nogil=True)
def _ink_map(grey, invert):  # type: ignore[no-untyped-def]
    """A new ink map: `grey` (inverted when `invert`) less its background level.

    The median pixel is background in a character image (ink covers well under half of it).
    Most inputs (CASIA bitmaps: pure white paper) have a 0 background, which a count of the 0
    pixels shows without a histogram.
    """
    h, w = grey.shape
    ink = np.empty((h, w), np.uint8)
    zeros = 0
    for y in range(h):
        for x in range(w):
            v = 255 - grey[y, x] if invert else grey[y, x]
            ink[y, x] = v
            zeros += v == 0
    if 2 * zeros >= h * w:
        return ink
    flat = ink.reshape(-1)
    hist = np.zeros(256, np.int64)
    for v in flat:
        hist[v] += 1
    target, cum, background = 0.5 * flat.size, 0, 255
    for v in range(256):
        cum += hist[v]
        if cum >= target:
            background = v
            break
    for i in range(flat.size):
        flat[i] = flat[i] - background if flat[i] > background else 0
    return ink


def to_ink(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any grey/RGB/RGBA/palette image, either polarity -> (H, W) uint8 ink map.

    A mostly transparent image (a drawing canvas) gives the map of its opaque box only, which
    `normalize` (it crops to the ink) treats the same.

    Transparent pixels are background whatever their colour (a canvas' transparent layer): an
    image with alpha is composited over white, or over black where its ink is light.
    """
    if isinstance(image, Image.Image):
        image = _pil_to_array(image)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected a grey, RGB or RGBA image, got an array of shape {arr.shape}")
    if arr.size == 0 or min(arr.shape[:2]) < 2:
        raise EmptyImageError(
            f"image of size {arr.shape[1]}x{arr.shape[0]} has no room for a character"
        )
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr)
    arr = _shrink(arr)
    if arr.ndim == 2:
        return _polarity_ink(arr)
    if arr.shape[2] == 4:
        ink = _drawing_ink(arr)
        if ink is not None:
            return ink
    grey = cv2.cvtColor(np.ascontiguousarray(arr[:, :, :3]), cv2.COLOR_RGB2GRAY)
    if arr.shape[2] == 3:
        return _polarity_ink(grey)
    alpha = arr[:, :, 3].astype(np.uint16)
    # Composite over white (dark ink on a transparent canvas); if that leaves no ink, the ink was
    # light, so composite over black instead.
    over_white = ((grey * alpha + 255 * (255 - alpha)) // 255).astype(np.uint8)
    ink = _polarity_ink(over_white)
    if int(ink.max()) >= INK_THRESHOLD:
        return ink
    return _polarity_ink(((grey * alpha) // 255).astype(np.uint8))


def _drawing_ink(rgba: np.ndarray) -> np.ndarray | None:
    """The ink of a mostly transparent RGBA image (a drawing canvas), or None for other images.

    The general path's result cropped to the opaque box, at a fraction of its cost (each pass
    over a 400x400 canvas costs ~0.1 ms here): with most pixels transparent, the composite over
    white has a white median, so the general path inverts it, and its background level is 0.
    """
    alpha = cv2.extractChannel(np.ascontiguousarray(rgba), 3)
    x, y, w, h = cv2.boundingRect(alpha)
    if w == 0 or (2 * w * h >= alpha.size and 2 * cv2.countNonZero(alpha) >= alpha.size):
        return None
    box = rgba[y : y + h, x : x + w]
    grey = cv2.cvtColor(np.ascontiguousarray(box), cv2.COLOR_RGBA2GRAY)
    if cv2.countNonZero(grey) == 0:  # black ink (a canvas brush): the ink is the alpha
        return alpha[y : y + h, x : x + w].copy()
    a = box[:, :, 3].astype(np.uint16)
    over_white = ((grey * a + 255 * (255 - a)) // 255).astype(np.uint8)
    if int(over_white.min()) > 255 - INK_THRESHOLD:
        return None  # no dark ink: light ink on a transparent canvas takes the general path
    return 255 - over_white  # the opaque box only: outside it the ink map is 0


def _pil_to_array(image: Image.Image) -> np.ndarray:
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
    elif image.mode in ("I", "I;16", "F", "1", "CMYK", "YCbCr", "HSV", "LAB"):
        image = (
            image.convert("L") if image.mode in ("1", "I", "I;16", "F") else image.convert("RGB")
        )
    return np.asarray(image)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    arr = arr.astype(np.float32)
    top = float(arr.max()) if arr.size else 1.0
    if top <= 1.0:  # float images in [0, 1]
        arr = arr * 255.0
    elif top > 255.0:  # 16-bit
        arr = arr * (255.0 / top)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _shrink(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    side = max(h, w)
    if side <= _MAX_INPUT_SIDE:
        return arr
    scale = _MAX_INPUT_SIDE / side
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def _polarity_ink(grey: np.ndarray) -> np.ndarray:
    # Light background when the median (background) pixel is light: dark-on-light, invert it.
    if np.median(grey) >= 128:
        return ink_from_white_background(grey)
    return _remove_background(grey)


def normalize(ink: np.ndarray, cfg: NormConfig) -> np.ndarray:
    """Ink map -> (S, S) uint8: crop to ink, scale preserving aspect ratio, centre.

    Raises:
        EmptyImageError: when no pixel reaches `cfg.ink_threshold`.
    """
    if ink.ndim != 2:
        raise ValueError(f"expected a 2-D ink map, got shape {ink.shape}")
    if ink.dtype != np.uint8:
        raise ValueError(f"expected a uint8 ink map, got {ink.dtype}")
    x0, y0, w, h, *sums = _ink_box_moments(ink, cfg.ink_threshold)
    if w == 0 or sums[0] == 0:
        raise EmptyImageError("no ink in image")
    crop = ink[y0 : y0 + h, x0 : x0 + w]

    S = cfg.size
    margin = cfg.margin * S / 64
    inner = S - 2 * margin
    bbox_scale = inner / max(h, w)
    if cfg.method == "linear":
        scale = bbox_scale
        cy, cx = h / 2, w / 2
    else:
        cy, cx, sy, sx = _moments(*sums)
        # At most the scale that fills the box up to half the margin: a wide character then
        # spills into the margin instead of losing strokes off the edge.
        scale = min(inner / (cfg.moment_span * max(sy, sx, 1e-3)), (S - margin) / max(h, w))
        # centroid to the centre, but slid back where that would push ink past half the margin
        cx = _clamp_centre(cx, w, scale, S, margin / 2)
        cy = _clamp_centre(cy, h, scale, S, margin / 2)
    # (2, 3) affine: scale about the centre point, which lands at the image centre
    matrix = np.array([[scale, 0, S / 2 - scale * cx], [0, scale, S / 2 - scale * cy]], np.float32)
    if scale < 0.5:
        # warpAffine samples, it does not average: area-resize first to avoid aliasing thin strokes
        small = cv2.resize(
            crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        fy, fx = small.shape[0] / h, small.shape[1] / w
        matrix[0, 0], matrix[1, 1] = scale / fx, scale / fy
        crop = small
    out = _warp_scaled(crop, matrix[0, 0], matrix[0, 2], matrix[1, 1], matrix[1, 2], S)
    # Stretch after resampling: shrinking a big image averages thin strokes into faint grey,
    # which the stretch restores (a thin mouse stroke then looks like a pen stroke).
    if cfg.stretch:
        _stretch_inplace(out, cfg.ink_threshold // 2, _STRETCH_FRACTION, _STRETCH_LUTS)
    return out


def _clamp_centre(c: float, extent: int, scale: float, S: int, inset: float) -> float:
    # The ink spans [0, extent) in crop coordinates and lands on [S/2 - scale*c, ...).
    half = (S / 2 - inset) / scale
    lo = half  # the largest c that keeps the crop's start `inset` inside the image
    hi = extent - half  # the smallest c that keeps its end `inset` inside the image
    if lo >= hi:
        return min(max(c, hi), lo)
    return (lo + hi) / 2  # the ink is larger than the image at this scale: centre it


# Row `level` maps grey g to min(255, g * 255 / level), truncated (float32, as it always was).
_STRETCH_LUTS = np.clip(
    np.arange(256, dtype=np.float32)[None, :]
    * (255.0 / np.maximum(np.arange(256, dtype=np.float32), 1.0))[:, None],
    0,
    255,
).astype(np.uint8)
_STRETCH_FRACTION = 0.9  # this share of the ink pixels lies below the level mapped to 255


def _moments(
    m00: float, m10: float, m01: float, m20: float, m02: float
) -> tuple[float, float, float, float]:
    """Raw moments of the crop -> centroid (y, x) and standard deviations (y, x) of its ink."""
    # Central moments as cv2.moments forms them (multiplying by 1 / m00), so the result is the
    # same to the last bit as the cv2 code this replaced.
    inv = 1.0 / m00
    mu20, mu02 = m20 - m10 * (m10 * inv), m02 - m01 * (m01 * inv)
    sx, sy = math.sqrt(mu20 / m00), math.sqrt(mu02 / m00)
    # + 0.5: moments place pixel centres at integer coordinates, the affine map at half-integers
    return m01 / m00 + 0.5, m10 / m00 + 0.5, sy, sx


# The per-pixel passes of `normalize` are compiled (numba): as numpy and OpenCV calls, most of
# their time went to call overhead and temporaries on a 64x64 character. `cache=True` keeps the
# machine code beside the module, so only the first call on a machine compiles.
@njit(cache=True, nogil=True)
def _ink_box_moments(ink, threshold):  # type: ignore[no-untyped-def]
    """Bounding box of the pixels >= threshold and the raw grey-level moments inside it:
    (x0, y0, w, h, m00, m10, m01, m20, m02); w = 0 when no pixel reaches the threshold."""
    h, w = ink.shape
    # row and column maxima (loops the compiler vectorises) give the box
    col_max = np.zeros(w, np.uint8)
    y0, y1 = h, -1
    for y in range(h):
        row = ink[y]
        row_max = np.uint8(0)
        for x in range(w):
            v = row[x]
            col_max[x] = max(col_max[x], v)
            row_max = max(row_max, v)
        if row_max >= threshold:
            y0 = min(y0, y)
            y1 = y
    if y1 < 0:
        return 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0
    x0, x1 = 0, w - 1
    while col_max[x0] < threshold:
        x0 += 1
    while col_max[x1] < threshold:
        x1 -= 1
    # moments from row and column sums; integer sums are exact, as cv2.moments' are for 8 bits
    bw = x1 - x0 + 1
    col_sum = np.zeros(bw, np.int32)
    m00 = m01 = m02 = 0
    for y in range(y0, y1 + 1):
        row = ink[y, x0 : x1 + 1]
        row_sum = 0
        for x in range(bw):
            v = np.int32(row[x])
            col_sum[x] += v
            row_sum += v
        dy = y - y0
        m00 += row_sum
        m01 += dy * row_sum
        m02 += dy * dy * row_sum
    m10 = m20 = 0
    for x in range(bw):
        c = np.int64(col_sum[x])
        m10 += x * c
        m20 += x * x * c
    return x0, y0, bw, y1 - y0 + 1, float(m00), float(m10), float(m01), float(m20), float(m02)


@njit(cache=True, nogil=True)
def _warp_scaled(src, ax, bx, ay, by, size):  # type: ignore[no-untyped-def]
    """`cv2.warpAffine(src, [[ax, 0, bx], [0, ay, by]], (size, size), INTER_LINEAR)` with a zero
    border, for the axis-aligned maps `normalize` uses.

    The map is separable, so each output column and row is located once, not each pixel. The
    arithmetic is OpenCV 5's (the float32 matrix inverted in double, source coordinates in
    float32 with a fused multiply-add, bilinear weights in float32, rounded to nearest even):
    the output equals OpenCV's but for a rare pixel one grey level apart (about 1 in 100,000;
    tests/test_preprocess.py holds it to that), at a fraction of its cost.
    """
    rows, cols = src.shape
    # the inverse map x = c x' + d, as cv2.invertAffineTransform computes it in double
    ax, bx, ay, by = np.float64(ax), np.float64(bx), np.float64(ay), np.float64(by)
    det = 1.0 / (ax * ay)
    cx, cy = ay * det, ax * det
    dx, dy = -cx * bx, -cy * by
    # columns: float32 fused multiply-add (float32 products are exact in float64)
    col_i = np.empty(size, np.int64)
    col_f = np.empty(size, np.float32)
    cxf, dxf = np.float32(cx), np.float32(dx)
    for x in range(size):
        p = np.float32(np.float64(cxf) * np.float64(np.float32(x)) + np.float64(dxf))
        col_i[x] = np.int64(np.floor(p))
        col_f[x] = p - np.float32(col_i[x])
    # rows: the row's offset in double, rounded to float32
    row_i = np.empty(size, np.int64)
    row_f = np.empty(size, np.float32)
    for y in range(size):
        p = np.float32(y * cy + dy)
        row_i[y] = np.int64(np.floor(p))
        row_f[y] = p - np.float32(row_i[y])
    padded = np.zeros((rows + 2, cols + 2), np.float32)  # one zero pixel around: no bound checks
    for y in range(rows):
        for x in range(cols):
            padded[y + 1, x + 1] = src[y, x]
    out = np.zeros((size, size), np.uint8)
    for y in range(size):
        iy = row_i[y]
        if iy < -1 or iy >= rows:
            continue
        fy = row_f[y]
        top, bottom = padded[iy + 1], padded[iy + 2]
        for x in range(size):
            ix = col_i[x]
            if ix < -1 or ix >= cols:
                continue
            fx = col_f[x]
            p00, p01 = top[ix + 1], top[ix + 2]
            p10, p11 = bottom[ix + 1], bottom[ix + 2]
            v0 = p00 + fx * (p01 - p00)
            v1 = p10 + fx * (p11 - p10)
            v = np.rint(v0 + fy * (v1 - v0))
            out[y, x] = 255 if v > 255 else (0 if v < 0 else np.uint8(v))
    return out


@njit(cache=True, nogil=True)
def _stretch_inplace(image, low, fraction, luts):  # type: ignore[no-untyped-def]
    """Maps the grey level below which `fraction` of the pixels >= `low` lie to 255 (rows of
    `luts`), in place, unless that level is already >= 250; returns the level."""
    # The 90th percentile of the ink: strong ink saturates whatever the scanner's contrast, the
    # soft edges stay grey.
    flat = image.reshape(-1)
    # four interleaved histograms: consecutive equal pixels do not wait on one counter
    hist = np.zeros((4, 256), np.int32)
    n4 = flat.size // 4 * 4
    for i in range(0, n4, 4):
        hist[0, flat[i]] += 1
        hist[1, flat[i + 1]] += 1
        hist[2, flat[i + 2]] += 1
        hist[3, flat[i + 3]] += 1
    for i in range(n4, flat.size):
        hist[0, flat[i]] += 1
    counts = np.zeros(256, np.int64)
    total = 0
    for v in range(256):
        counts[v] = hist[0, v] + hist[1, v] + hist[2, v] + hist[3, v]
        total += counts[v] if v >= low else 0
    target = fraction * total
    level, cum = 255, 0
    for v in range(low, 256):
        cum += counts[v]
        if cum >= target:
            level = v
            break
    if level < 250:
        lut = luts[level]
        for i in range(flat.size):
            flat[i] = lut[flat[i]]
    return level


def warm_up() -> None:
    """Loads (or, the first time on a machine, compiles: ~4 s here) the compiled passes.

    Call it before forking worker processes, so that they inherit the machine code instead of
    each loading it again.
    """
    ink = np.zeros((8, 8), np.uint8)
    ink[2:6, 3] = 255
    normalize(ink_from_white_background(255 - ink), NormConfig(size=16))


def preprocess(image: Image.Image | np.ndarray, cfg: NormConfig) -> np.ndarray:
    """Any image -> the normalised (S, S) uint8 ink map the model sees."""
    return normalize(to_ink(image), cfg)


def to_model_input(images: Any) -> Any:
    """uint8 ink maps (B, 1, S, S) or (1, S, S) -> float32 in [0, 1], the models' input.

    Takes a numpy array (the recogniser, which runs without torch when an export does the work)
    or a torch tensor (training, evaluation), and returns the same kind, bit for bit equal.
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        return images.astype(np.float32) / np.float32(255.0)
    import torch  # a tensor was passed, so torch is loaded already

    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.float().div_(255.0)
