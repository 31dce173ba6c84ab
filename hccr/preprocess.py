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
from PIL import Image

from hccr.norm_kernels import (
    STRETCH_LUTS,
    ink_box_moments,
    ink_map,
    stretch_inplace,
    warp_scaled,
)

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
    return ink_map(_as_uint8_2d(grey), True)


def _remove_background(ink: np.ndarray) -> np.ndarray:
    return ink_map(_as_uint8_2d(ink), False)


def _as_uint8_2d(image: np.ndarray) -> np.ndarray:
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {image.dtype} of shape {image.shape}")
    return image


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
    x0, y0, w, h, *sums = ink_box_moments(ink, cfg.ink_threshold)
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
    out = warp_scaled(crop, matrix[0, 0], matrix[0, 2], matrix[1, 1], matrix[1, 2], S)
    # Stretch after resampling: shrinking a big image averages thin strokes into faint grey,
    # which the stretch restores (a thin mouse stroke then looks like a pen stroke).
    if cfg.stretch:
        stretch_inplace(out, cfg.ink_threshold // 2, _STRETCH_FRACTION, STRETCH_LUTS)
    return out


def _clamp_centre(c: float, extent: int, scale: float, S: int, inset: float) -> float:
    # The ink spans [0, extent) in crop coordinates and lands on [S/2 - scale*c, ...).
    half = (S / 2 - inset) / scale
    lo = half  # the largest c that keeps the crop's start `inset` inside the image
    hi = extent - half  # the smallest c that keeps its end `inset` inside the image
    if lo >= hi:
        return min(max(c, hi), lo)
    return (lo + hi) / 2  # the ink is larger than the image at this scale: centre it


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
