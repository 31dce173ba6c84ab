"""Training-only distortions of normalised uint8 samples: affine, elastic, stroke width; and of
a trajectory sample's points (`StrokeAugment`).

Only training imports this module (torchvision comes with it); `LmdbDataset` and the inference
path never do.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from hccr.dataset import Transform
from hccr.trajectory import TrajectoryConfig, draw_flat

# elastic displacement at strength 1 for a 64-pixel side, scaled with the side
_ELASTIC_REFERENCE_SIZE = 64
_ELASTIC_ALPHA, _ELASTIC_SIGMA = 8.0, 4.0


def elastic_params(size: int, strength: float = 1.0) -> tuple[float, float]:
    """(alpha, sigma) of `train_augment`'s elastic step for an image side `size`."""
    scale = size / _ELASTIC_REFERENCE_SIZE
    return _ELASTIC_ALPHA * scale * strength, _ELASTIC_SIGMA * scale


class ElasticWarp(torch.nn.Module):
    """torchvision's `v2.ElasticTransform` (Simard et al. 2003) computed with OpenCV, ~15x faster.

    The same random field: uniform noise in [-1, 1] per pixel and axis, Gaussian-blurred (kernel
    8 * sigma + 1, reflected borders), scaled so a pixel moves by `alpha / 2` times the blurred
    noise, then a bilinear resample with black outside. torchvision blurs two full-size fields
    with a 33-tap torch convolution: 2.3 ms of a 64x64 sample here, the largest cost of a
    training sample on CPU.
    """

    def __init__(self, alpha: float, sigma: float) -> None:
        super().__init__()
        self.alpha, self.sigma = float(alpha), float(sigma)
        k = int(8 * self.sigma + 1)
        self.kernel = k + 1 if k % 2 == 0 else k

    def displacement(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """A random (dx, dy) field in pixels, each (h, w) float32."""
        noise = (torch.rand((2, h, w)) * 2 - 1).numpy()
        k, scale = (self.kernel, self.kernel), self.alpha / 2
        dx, dy = (
            cv2.GaussianBlur(n, k, self.sigma, borderType=cv2.BORDER_REFLECT_101) for n in noise
        )
        return dx * scale, dy * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (1, S, S) uint8
        h, w = x.shape[-2:]
        dx, dy = self.displacement(h, w)
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        warped = cv2.remap(
            x[0].numpy(),
            gx + dx,
            gy + dy,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return torch.from_numpy(warped).unsqueeze(0)


class StrokeWidthJitter(torch.nn.Module):
    """Thickens (dilation) or thins (erosion) ink by one pixel with probability `p` each."""

    def __init__(self, p: float = 0.3) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (1, S, S) uint8
        r = float(torch.rand(()))
        if r >= 2 * self.p:
            return x
        f = x.float().unsqueeze(0)  # (1, 1, S, S)
        if r < self.p:
            f = F.max_pool2d(f, 3, stride=1, padding=1)
        else:
            f = -F.max_pool2d(-f, 3, stride=1, padding=1)
        return f.squeeze(0).to(torch.uint8)


def train_augment(size: int, strength: float = 1.0) -> Transform:
    """Writer-like variation on normalised uint8 samples: affine, elastic, stroke width.

    `strength` scales every range; 0 disables augmentation.
    """
    if strength <= 0:
        return v2.Identity()
    s = strength
    return v2.Compose(
        [
            v2.RandomApply(
                [
                    v2.RandomAffine(
                        degrees=8 * s,
                        translate=(0.06 * s, 0.06 * s),
                        scale=(1 - 0.12 * s, 1 + 0.08 * s),
                        shear=(-12 * s, 12 * s, -5 * s, 5 * s),
                    )
                ],
                p=0.8,
            ),
            v2.RandomApply([ElasticWarp(*elastic_params(size, s))], p=0.3),
            StrokeWidthJitter(p=0.2),
        ]
    )


class StrokeAugment:
    """Writer-like variation of a trajectory sample's normalised points, then the drawing.

    The image augmentation's geometry acting on points instead of pixels (rotation, shear,
    anisotropic scale, shift about the map centre), a small wobble of each stroke (its own
    shift) and of the pen width; the directions follow the warped strokes, as they would had
    the writer drawn them so. `strength` scales every range, as `train_augment`'s.
    """

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = float(strength)
        self._rng: np.random.Generator | None = None
        self._pid: int | None = None

    @property
    def rng(self) -> np.random.Generator:
        # one generator per process, seeded from torch's seed there (DataLoader gives every
        # worker its own), so a run's augmentation follows --seed
        if self._rng is None or self._pid != os.getpid():
            self._rng, self._pid = np.random.default_rng(torch.initial_seed()), os.getpid()
        return self._rng

    def __call__(self, points: list[np.ndarray], cfg: TrajectoryConfig) -> np.ndarray:
        s, S, rng = self.strength, cfg.size, self.rng
        angle = np.deg2rad(rng.uniform(-8, 8) * s)
        shear_x, shear_y = np.deg2rad(rng.uniform(-12, 12) * s), np.deg2rad(rng.uniform(-5, 5) * s)
        zoom = rng.uniform(1 - 0.12 * s, 1 + 0.08 * s, size=2)
        rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shear = np.array([[1.0, np.tan(shear_x)], [np.tan(shear_y), 1.0]])
        matrix = (rotate @ shear * zoom).astype(np.float32)
        shift = (rng.uniform(-0.06, 0.06, size=2) * s * S + S / 2).astype(np.float32)
        lengths = np.fromiter((len(p) for p in points), np.int64, len(points))
        wobble = rng.normal(0.0, 0.01 * s * S, size=(len(points), 2)).astype(np.float32)
        flat = (np.concatenate(points) - S / 2) @ matrix.T + shift + np.repeat(wobble, lengths, 0)
        pen = float(rng.uniform(1 - 0.3 * s, 1 + 0.3 * s))
        return draw_flat(flat, lengths, cfg, pen_scale=pen)
