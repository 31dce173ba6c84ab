"""A tiny trained bundle for recogniser, CLI and demo tests: 10 distinct characters, ~15 s on CPU.

Samples are pen-rendered from the vendored stroke medians (no font needed) with per-stroke and
global jitter and random pen widths, normalised by hccr.preprocess at a 32-pixel model size, and
a narrow registry student is trained on them with a plain loop. The same medians give the test
images and the strokes the browser test draws with the mouse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data_tools.render import render_strokes
from data_tools.strokes import load_medians
from hccr.bundle import save_bundle
from hccr.charset import Charset
from hccr.nets import create_model
from hccr.preprocess import NormConfig, normalize

TINY_CHARS = "一十人口日山水火大中"
TINY_ARCH = "student_lw_050"
TINY_KWARGS = {"channels": [16, 32, 32, 64], "depths": [1, 1, 1, 1], "feat_dim": 64, "dropout": 0.0}
TINY_NORM = NormConfig(size=32)


def char_strokes(ch: str) -> list[np.ndarray]:
    """The stroke medians of `ch`: (N, 2) float x, y in the unit box, y down."""
    strokes = load_medians().get(ch)
    if strokes is None:
        raise KeyError(f"no stroke data for {ch!r}")
    return strokes


def jitter_strokes(strokes: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """A plausible hand-drawn variant: global affine, per-stroke shift, per-point wobble."""
    angle = np.deg2rad(rng.uniform(-8, 8))
    shear = rng.uniform(-0.15, 0.15)
    sx, sy = rng.uniform(0.85, 1.15, size=2)
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = matrix @ np.array([[sx, shear], [0.0, sy]])
    out = []
    for s in strokes:
        s = (s - 0.5) @ matrix.T + 0.5
        s = s + rng.normal(0, 0.02, size=2) + rng.normal(0, 0.004, size=s.shape)
        out.append(s.astype(np.float32))
    return out


def render_sample(ch: str, rng: np.random.Generator, pen_width: float | None = None) -> np.ndarray:
    """A jittered pen rendering of `ch` as a 96x96 ink map (ink bright)."""
    width = rng.uniform(0.015, 0.12) if pen_width is None else pen_width
    return render_strokes(jitter_strokes(char_strokes(ch), rng), pen_width=width, canvas=96)


def make_training_set(per_char: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, ch in enumerate(TINY_CHARS):
        for _ in range(per_char):
            images.append(normalize(render_sample(ch, rng), TINY_NORM))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).unsqueeze(1).float() / 255.0  # (N, 1, S, S)
    return x, torch.tensor(labels)


def train_tiny_bundle(out: Path, steps: int = 300, seed: int = 0) -> Path:
    """Trains and saves the tiny bundle; raises if it does not learn its 10 classes."""
    torch.manual_seed(seed)
    x, y = make_training_set(per_char=60, seed=seed)
    x_val, y_val = make_training_set(per_char=10, seed=seed + 1)
    model = create_model(TINY_ARCH, num_classes=len(TINY_CHARS), **TINY_KWARGS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one is plenty for this model
    try:
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(x), (32,), generator=gen)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.inference_mode():
            accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
    finally:
        torch.set_num_threads(threads)
    if accuracy < 0.95:
        raise AssertionError(f"tiny bundle learned only {accuracy:.0%} of its validation set")
    charset = Charset(TINY_CHARS, name="tiny10")
    return save_bundle(out, model, TINY_ARCH, dict(TINY_KWARGS), charset, TINY_NORM,
                       metrics={"val_top1": accuracy})  # fmt: skip


def make_online_bundle(image_bundle: Path, out: Path) -> Path:
    """The tiny image bundle widened to read 9-channel trajectory maps (untrained directions:
    it answers as the image model does on the ink channel), exported to ONNX like a shipped one."""
    from hccr.bundle import load_bundle
    from hccr.export import export_model
    from hccr.nets import expand_input_channels
    from hccr.trajectory import TrajectoryConfig

    bundle = load_bundle(image_bundle)
    model = expand_input_channels(bundle.model, 9).eval()
    trajectory = TrajectoryConfig(size=bundle.norm.size)
    save_bundle(out, model, bundle.arch, dict(model.kwargs), bundle.charset, bundle.norm,
                trajectory=trajectory)  # fmt: skip
    export_model(model, out / "model.onnx", input_size=bundle.norm.size)
    return out
