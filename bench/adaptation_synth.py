"""Choosing the writer-adaptation settings (`hccr.adapt.StmConfig`) on synthetic writers only.

The method is checked on real writers nobody here has, so its settings must not be fitted to
the real writers of `bench/adaptation.py`. Here each synthetic writer is one hand:

- `font` and `skeleton` styles of the held-out font families (`hccr-data synth --split val`):
  one writer per font face (the LMDB's writer id), each sample warped on its own;
- `strokes` style (`--split val` seed stream), dealt at random to `--stroke-writers` writers,
  each with one fixed slant, rotation, aspect ratio and pen weight (dilated or eroded by one
  pixel) applied to all of its samples, renormalised as the recogniser would.

An online bundle (`"input": "strokes"`, e.g. `models/gb1-online`) gets the `strokes` writers
only (the font styles have no pen trajectories): the same styles applied to the generator's pen
points (`hccr-data synth --input strokes`), the pen width scaled by 2/3, 1 or 3/2 for the pen
weight, then drawn with the bundle's TrajectoryConfig as `Recognizer.prepare_strokes` draws.
With `--sets habits` it also gets writers that repeat their habits (`--habit-writers`, made
here): besides one global style, each keeps the generator's writer habits (cursive knob,
radical resize and move, slant, rise and aspect; `data_tools.styles.HABITS`) for every
character, where a `strokes` writer's samples each draw their own. `--sets stroke-habits` gives
the same writers (the same characters, habits and global style) stroke-level habits as well
(`data_tools.writer_habits.StrokeHabits`: a bias of the per-stroke cut, rotation, length and
bowing for each kind of stroke, and join rates of their own per gap, drawn once per writer).

As in `bench/adaptation.py`, each writer adapts on k samples of classes 0-1,876 (`--draws` random
draws) and is tested on all of its samples of classes 1,877-3,754, through the recogniser's
adapted path (the feature layer's pre-activation from the export cut there, then the map, the
ReLU and the float classifier: identical to `Recognizer.probabilities(x, profile)`). The score of
a setting is the mean relative error change over the writers whose error is at least 1% (fewer
errors make the ratio noise); the writers below, which the model already reads, report their mean change in points
(the harm a setting does there). Several `-k` score each setting at each k (one table per k),
and `--per-set` adds a table for each writer set. Settings tried: the prior (beta) and the bias prior (gamma),
the k samples augmented with small affine copies, and for unsupervised, confidence weighting
(probability to a power, a cut) and a second round of self-labelling with the adapted map.
Other maps than STM's full affine one: a bias only (A = I: the writer's mean moved to the
targets' mean, no labels needed beyond the model's answers), a diagonal map (a scale and shift
per feature), soft targets (unsupervised: the probability-weighted mean of the prototypes),
class-mean prototypes (`--prototypes LMDB`, as `hccr adapt --prototypes`), and a
discriminative map (A, b fitted by L-BFGS to the cross-entropy of the adapted classifier on
the k samples, pulled towards the identity). `--adabn` also scores re-estimating BatchNorm
statistics on the writer's k samples (no labels; the float model in torch): all layers, or
only the feature layer's.

  python bench/adaptation_synth.py --model models/gb1-student [--work DIR] [--json out.json]
  python bench/adaptation_synth.py --model models/gb1-online --stroke-writers 8
  python bench/adaptation_synth.py --model models/gb1-online --sets habits --grid prior
  python bench/adaptation_synth.py --model models/gb1-online --sets stroke-habits -k 50 200 400
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from hccr.adapt import StmConfig, fit_stm, weight_prototypes
from hccr.lmdb_format import decode_points_sample, decode_sample, open_lmdb, read_meta, sample_key
from hccr.preprocess import EmptyImageError, normalize, to_model_input
from hccr.recognizer import Recognizer
from hccr.trajectory import draw, normalize_points

HALF = 1877  # as bench/adaptation.py: classes 0-1,876 adapt, 1,877-3,754 test
SETS = {"font": ("font=1", 23), "skeleton": ("skeleton=1", 24), "strokes": ("strokes=1", 25)}
PEN_SCALE = {-1: 2 / 3, 0: 1.0, 1: 1.5}  # trajectory writers: the pen weight as pen width
BATCH = 256
NUM_AUG = 4  # affine copies made of each adaptation sample
STYLED = ("strokes", "habits", "stroke-habits")  # the writer sets given one global style a writer
HABIT_SETS = ("habits", "stroke-habits")  # made here (online bundles), not by hccr-data synth
HABIT_PER_HALF = 470  # as many as a `strokes` writer has, about


def make_sets(work: Path, model: Recognizer, per_char: int, names=tuple(SETS)) -> dict[str, Path]:
    online = model.trajectory is not None
    out = {}
    for name, (styles, seed) in SETS.items():
        if name not in names or (online and name != "strokes"):  # strokes alone has a pen
            continue
        db = work / f"{name}{'-strokes' if online else ''}.lmdb"
        if not db.exists():
            cmd = [sys.executable, "-m", "data_tools.cli", "synth", "-o", str(db), "--split", "val",
                   "--styles", styles, "--seed", str(seed), "--per-char", str(per_char),
                   "--size", str(model.norm.size), "--norm", model.norm.method, "--no-progress"]  # fmt: skip
            if online:
                cmd += [
                    "--input",
                    "strokes",
                    "--pen-up" if model.trajectory.pen_up else "--no-pen-up",
                ]
            subprocess.run(cmd, check=True, capture_output=True)
        out[name] = db
    return out


def load(db: Path, rec: Recognizer) -> tuple[list, np.ndarray, np.ndarray]:
    """(samples: images, or pen points for a trajectory LMDB; class indices in the model's
    charset; writer ids)."""
    meta = read_meta(db)
    if list(meta["charset"]) != list(rec.charset.chars):
        raise SystemExit(f"{db}: another charset than {rec.name}'s")
    size = int(meta["image_size"])
    points = meta.get("input") == "strokes"
    samples, labels, writers = [], [], []
    with open_lmdb(db).begin(buffers=True) as txn:
        for i in range(int(meta["num_samples"])):
            value = bytes(txn.get(sample_key(i)))
            if points:
                sample, label, writer = decode_points_sample(value)
            else:
                sample, label, writer = decode_sample(value, size)
            samples.append(sample)
            labels.append(label)
            writers.append(writer)
    return (samples if points else np.stack(samples)), np.array(labels), np.array(writers)


def _warp(image: np.ndarray, matrix: np.ndarray, shift: np.ndarray, pad: int = 0) -> np.ndarray:
    """`image` under x -> matrix (x - centre) + centre + shift, on a canvas `pad` wider."""
    big = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    centre = np.array([big.shape[1] / 2, big.shape[0] / 2])
    affine = np.hstack([matrix, (centre - matrix @ centre + shift)[:, None]]).astype(np.float32)
    return cv2.warpAffine(big, affine, big.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=0)


def writer_style(seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {"angle": rng.uniform(-10, 10), "shear": rng.uniform(-0.35, 0.35),
            "aspect": rng.uniform(0.75, 1.3), "weight": int(rng.integers(-1, 2))}  # fmt: skip


def _style_matrix(style: dict[str, float]) -> np.ndarray:
    a = np.deg2rad(style["angle"])
    rotate = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return rotate @ np.array([[style["aspect"], style["shear"]], [0.0, 1.0 / style["aspect"]]])


def draw_points(
    points: list[np.ndarray], matrix: np.ndarray, shift: np.ndarray, rec: Recognizer, pen: float
) -> np.ndarray:
    """Trajectory writers: normalised pen points under x -> matrix (x - centre) + centre + shift,
    renormalised and drawn with the bundle's TrajectoryConfig (pen width times `pen`)."""
    centre = rec.trajectory.size / 2
    moved = [(p - centre) @ matrix.T + centre + shift for p in points]
    return draw(normalize_points(moved, rec.trajectory), rec.trajectory, pen)


def apply_style(sample, style: dict[str, float], rec: Recognizer) -> np.ndarray:
    matrix = _style_matrix(style)
    if rec.trajectory is not None:
        return draw_points(sample, matrix, np.zeros(2), rec, PEN_SCALE[style["weight"]])
    image = sample
    out = _warp(image, matrix, np.zeros(2), pad=image.shape[0] // 2)
    if style["weight"]:
        op = cv2.dilate if style["weight"] > 0 else cv2.erode
        out = op(out, np.ones((3, 3), np.uint8))
    try:
        return normalize(out, rec.norm)
    except EmptyImageError:  # eroded away: keep the unstyled sample
        return image


def small_affine(sample, rng: np.random.Generator, rec: Recognizer, pen: float) -> np.ndarray:
    """One augmentation copy: +-6 degrees, +-0.12 shear, 0.9-1.1 scale, +-2 px shift."""
    a = np.deg2rad(rng.uniform(-6, 6))
    rotate = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    sx, sy = rng.uniform(0.9, 1.1, 2)
    matrix = rotate @ np.array([[sx, rng.uniform(-0.12, 0.12)], [0.0, sy]])
    if rec.trajectory is not None:
        return draw_points(sample, matrix, rng.uniform(-2, 2, 2), rec, pen)
    return _warp(sample, matrix, rng.uniform(-2, 2, 2))


def features(rec: Recognizer, images: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [rec.pre_features(images[i : i + BATCH]).numpy() for i in range(0, len(images), BATCH)]
    )


def habit_samples(
    rec: Recognizer, writers: int, stroke_level: bool = False
) -> tuple[list, np.ndarray, np.ndarray]:
    """(normalised pen points, class indices, writer ids) of trajectory writers that repeat their
    habits: each draws the generator's writer habits once (`data_tools.styles.HABITS`: cursive
    knob, radical resize and move, slant, rise and aspect) and keeps them for every character,
    `HABIT_PER_HALF` classes from each half of the charset, one sample each. `stroke_level`
    adds each writer's `StrokeHabits` (drawn from a stream of their own: the characters and
    writer habits stay those of `stroke_level=False`)."""
    from data_tools import styles
    from data_tools.strokes import load_medians
    from data_tools.writer_habits import StrokeHabits

    medians, rng = load_medians(), np.random.default_rng(11)
    chars = rec.charset.chars
    samples, labels, ids = [], [], []
    for w in range(writers):
        habits = rng.random(17)
        stroke_habits = StrokeHabits.draw(np.random.default_rng([12, w])) if stroke_level else None
        for half in (np.arange(HALF), np.arange(HALF, len(chars))):
            for c in rng.choice(half, HABIT_PER_HALF, replace=False):
                strokes = medians.get(chars[c])
                if not strokes:
                    continue
                template = styles.StrokeTemplate.from_medians(strokes, medians.radicals(chars[c]))
                points, _ = styles.perturb_strokes(template, rng, habits, stroke_habits)
                samples.append(normalize_points(points, rec.trajectory))
                labels.append(int(c))
                ids.append(w)
    return samples, np.array(labels), np.array(ids)


def synthetic_writers(
    rec: Recognizer, dbs: dict[str, Path], stroke_writers: int, copies: bool = True,
    keep_inputs: bool = False, habit_writers: int = 0, habit_sets: tuple[str, ...] = ("habits",),
) -> list[dict]:  # fmt: skip
    """Each writer's features (adaptation, test, and with `copies` augmented copies of the
    adaptation samples); with `keep_inputs` also the model inputs (for --adabn). An online
    bundle also gets `habit_writers` writers that repeat their habits for each of `habit_sets`
    (`habit_samples`; "stroke-habits": stroke-level habits too)."""
    writers = []
    aug_rng = np.random.default_rng(0)
    sources = [(name, *load(db, rec)) for name, db in dbs.items()]
    if habit_writers and rec.trajectory is not None:
        for name in habit_sets:
            sources.append((name, *habit_samples(rec, habit_writers, name == "stroke-habits")))
    for name, samples, labels, ids in sources:
        pens = np.ones(len(labels))
        if name in STYLED:  # one global style a writer
            if name == "strokes":  # samples dealt at random
                ids = np.random.default_rng(7).integers(0, stroke_writers, len(labels))
            styles = [writer_style(w) for w in range(int(ids.max()) + 1)]
            pens = np.array([PEN_SCALE[styles[w]["weight"]] for w in ids])
            images = np.stack(
                [apply_style(im, styles[w], rec) for im, w in zip(samples, ids, strict=True)]
            )
        else:
            images = samples
        for w in np.unique(ids):
            adapt = np.where((ids == w) & (labels < HALF))[0]
            test = np.where((ids == w) & (labels >= HALF))[0]
            # copies of the writer's sample as styled (images) or of its styled points
            writers.append({
                "name": f"{name} {w}", "adapt_f": features(rec, images[adapt]),
                "adapt_y": labels[adapt], "test_f": features(rec, images[test]),
                "test_y": labels[test],
            })  # fmt: skip
            if copies:
                source = images if rec.trajectory is None else samples
                augmented = np.stack([small_affine(_styled_points(source[i], name, ids[i], rec),
                                                   aug_rng, rec, pens[i])
                                      for i in adapt for _ in range(NUM_AUG)])  # fmt: skip
                writers[-1]["aug_f"] = features(rec, augmented).reshape(len(adapt), NUM_AUG, -1)
            if keep_inputs:
                writers[-1]["adapt_x"], writers[-1]["test_x"] = images[adapt], images[test]
    return writers


def _styled_points(sample, name: str, writer: int, rec: Recognizer):
    """A trajectory writer's points under its style's matrix (drawn later with the copy's own
    small affine map); an image is returned as it is (already styled)."""
    if rec.trajectory is None or name not in STYLED:
        return sample
    matrix = _style_matrix(writer_style(int(writer)))
    centre = rec.trajectory.size / 2
    return [(p - centre) @ matrix.T + centre for p in sample]


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def diagonal_map(S, T, weights, prior) -> tuple[np.ndarray, np.ndarray]:
    """A scale and a shift per feature: STM's least squares with A diagonal (closed form per
    dimension), the scales pulled towards 1 as STM pulls A towards I."""
    d = S.shape[1]
    beta = prior * float((S**2).sum(1).mean()) / d
    ms, mt = weights @ S / weights.sum(), weights @ T / weights.sum()
    scale = ((weights[:, None] * (S - ms) * (T - mt)).sum(0) + beta) / (
        (weights[:, None] * (S - ms) ** 2).sum(0) + beta
    )
    return np.diag(scale), mt - scale * ms


def discriminative_map(S, y, weights, W, c, lam, lam_bias, steps=30):
    """(A, b) minimising the weighted cross-entropy of softmax(W relu(A s + b) + c) on the samples
    + lam ||A - I||^2 + lam_bias ||b||^2 (L-BFGS from the identity)."""
    S_t, y_t = torch.tensor(S, dtype=torch.float32), torch.tensor(y)
    w_t = torch.tensor(weights, dtype=torch.float32)
    W_t, c_t = torch.tensor(W, dtype=torch.float32), torch.tensor(c, dtype=torch.float32)
    eye = torch.eye(S.shape[1])
    A = eye.clone().requires_grad_(True)
    b = torch.zeros(S.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([A, b], max_iter=steps, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = torch.relu(S_t @ A.T + b) @ W_t.T + c_t
        ce = torch.nn.functional.cross_entropy(logits, y_t, reduction="none")
        loss = (ce * w_t).sum() / w_t.sum() + lam * ((A - eye) ** 2).sum() + lam_bias * (b**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return A.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)


class Dev:
    """The synthetic writers and the model's float classifier (W, c)."""

    def __init__(
        self, rec: Recognizer, writers: list[dict], k: int, draws: int,
        class_means: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        W, c = rec.classifier_affine()
        self.W, self.c = W.numpy().astype(np.float64), c.numpy().astype(np.float64)
        self.writers, self.k, self.draws = writers, k, draws
        self.class_means = class_means
        for w in writers:
            w["base"] = self.error(w, np.eye(self.W.shape[1]), np.zeros(self.W.shape[1]))

    def error(self, writer: dict, A: np.ndarray, b: np.ndarray) -> float:
        logits = np.maximum(writer["test_f"] @ A.T + b, 0) @ self.W.T + self.c
        return float((logits.argmax(1) != writer["test_y"]).mean())

    def _map(self, S, y, weights, protos, prior, gamma, kind, lam):
        if kind == "bias":  # A = I: b moves the writer's (weighted) mean to the targets'
            return np.eye(S.shape[1]), weights @ (protos[y] - S) / weights.sum()
        if kind == "diagonal":
            return diagonal_map(S, protos[y], weights, prior)
        if kind == "discriminative":
            return discriminative_map(S, y, weights, self.W, self.c, lam, 1000.0)
        return fit_stm(S, protos[y], weights, prior, gamma)

    def fit(self, S, y, weights, supervised, prior, gamma, rounds, power, cut, kind="stm",
            lam=0.1, soft=False, means=False):  # fmt: skip
        if means:
            protos = self.class_means
        else:  # scaled to the features after the ReLU, as `Adapter.fit` scales them
            protos = weight_prototypes(
                self.W, float(np.linalg.norm(np.maximum(S, 0), axis=1).mean())
            )
        if supervised:
            return self._map(S, y, weights, protos, prior, gamma, kind, lam)
        d = S.shape[1]
        A, b = np.eye(d), np.zeros(d)
        for _ in range(rounds):  # label with the current map, refit from the identity
            p = _softmax(np.maximum(S @ A.T + b, 0) @ self.W.T + self.c)
            conf, pred = p.max(1), p.argmax(1)
            keep = conf >= cut
            w = (weights * conf**power)[keep]
            if soft:  # each target: the probability-weighted mean of the prototypes
                A, b = fit_stm(S[keep], p[keep] @ protos, w, prior, gamma)
            else:
                A, b = self._map(S[keep], pred[keep], w, protos, prior, gamma, kind, lam)
        return A, b

    def score(self, supervised=True, prior=200.0, gamma=0.0, copies=0, copy_weight=1.0,
              rounds=1, power=1.0, cut=0.0, **kind) -> dict:  # fmt: skip
        changes, easy = [], []
        for w in self.writers:
            for r in range(self.draws):
                rng = np.random.default_rng(r)
                sel = rng.choice(len(w["adapt_y"]), min(self.k, len(w["adapt_y"])), replace=False)
                S, y = w["adapt_f"][sel], w["adapt_y"][sel]
                weights = np.ones(len(sel))
                if copies:
                    S = np.concatenate([S, w["aug_f"][sel, :copies].reshape(-1, S.shape[1])])
                    y = np.concatenate([y, np.repeat(y, copies)])
                    weights = np.concatenate([weights, np.full(len(sel) * copies, copy_weight)])
                A, b = self.fit(S, y, weights, supervised, prior, gamma, rounds, power, cut, **kind)
                err = self.error(w, A, b)
                if w["base"] >= 0.01:
                    changes.append((err - w["base"]) / w["base"])
                else:
                    easy.append(err - w["base"])
        return _summary(changes, easy)


def _summary(changes: list[float], easy: list[float]) -> dict:
    return {"error_change": float(np.mean(changes)) if changes else float("nan"),
            "easy_change_pt": 100 * float(np.mean(easy)) if easy else 0.0}  # fmt: skip


def adabn(rec: Recognizer, writers: list[dict], k: int, last_only: bool) -> dict:
    """Error change when the float model's BatchNorm statistics (all layers, or only the feature
    layer's) are re-estimated on each writer's k adaptation samples (draw 0), labels unused."""
    changes, easy = [], []
    for w in writers:
        sel = np.random.default_rng(0).choice(
            len(w["adapt_y"]), min(k, len(w["adapt_y"])), replace=False
        )
        model = copy.deepcopy(rec.model).eval()
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for bn in norms[-1:] if last_only else norms:
            bn.reset_running_stats()
            bn.momentum = None  # a plain mean over the batch
            bn.train()
        with torch.no_grad():
            model(torch.from_numpy(to_model_input(_nchw(w["adapt_x"][sel]))))
            model.eval()
            x = w["test_x"]
            logits = torch.cat([model(torch.from_numpy(to_model_input(_nchw(x[i : i + BATCH]))))
                                for i in range(0, len(x), BATCH)])  # fmt: skip
        err = float((logits.argmax(1).numpy() != w["test_y"]).mean())
        if w["base"] >= 0.01:
            changes.append((err - w["base"]) / w["base"])
        else:
            easy.append(err - w["base"])
    return _summary(changes, easy)


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x[:, None] if x.ndim == 3 else x)


def _map_name(setting: dict) -> str:
    kind = setting.get("kind", "stm")
    name = {"stm": "STM (full A)", "bias": "bias only (A = I)", "diagonal": "diagonal A",
            "discriminative": f"discriminative (lambda {setting.get('lam', 0.1):g})"}[kind]  # fmt: skip
    if setting.get("soft"):
        name += ", soft targets"
    if setting.get("means"):
        name += ", class-mean prototypes"
    return name


def _fmt(setting: dict, result: dict) -> str:
    copies = setting.get("copies", 0)
    weight = setting.get("copy_weight", 1.0)
    mode = "supervised" if setting["supervised"] else "unsupervised"
    power, cut = setting.get("power", 1.0), setting.get("cut", 0.0)
    confidence = "-" if setting["supervised"] else f"p^{power:g}, cut {cut:g}"
    prior = setting["prior"] if setting.get("kind", "stm") in ("stm", "diagonal") else "-"
    return (
        f"| {mode} | {_map_name(setting)} | {prior} | {setting.get('gamma', 0.0):g} | "
        f"{f'{copies} ({weight:g})' if copies else '-'} | {setting.get('rounds', 1)} | "
        f"{confidence} | {100 * result['error_change']:+.1f}% | {result['easy_change_pt']:+.2f} |"
    )


GROUPS = ("prior", "copies", "confidence", "maps")


PRIORS = (50, 100, 200, 300, 400, 600, 800, 1200)
PRIOR = int(StmConfig.prior)  # the default, beside which the other settings are scored


def grid(groups=GROUPS, class_means: bool = False, priors=PRIORS) -> list[dict]:
    """The settings of the chosen groups: "prior" (beta, gamma), "copies" (affine copies of the
    k samples), "confidence" (unsupervised weighting, cut, rounds), "maps" (other maps than
    STM's, other targets; STM at the default prior first, for reference); each at the default
    prior `PRIOR` unless it varies the prior."""
    rows: list[dict] = []
    for mode in (True, False):
        if "prior" in groups:
            for prior in priors:
                rows.append({"supervised": mode, "prior": prior})
            rows.append({"supervised": mode, "prior": PRIOR, "gamma": 1.0})
        if "copies" in groups:
            for copies in (2, 4):  # the prior counts samples: scaled too, for the same pull
                for prior in (PRIOR, PRIOR * (1 + copies)):
                    for weight in (1.0, 0.5):
                        rows.append({"supervised": mode, "prior": prior, "copies": copies,
                                     "copy_weight": weight})  # fmt: skip
    if "confidence" in groups:
        for extra in ({"rounds": 2}, {"power": 0.0}, {"power": 2.0}, {"cut": 0.3},
                      {"rounds": 2, "power": 2.0}):  # fmt: skip
            rows.append({"supervised": False, "prior": PRIOR, **extra})
    if "maps" in groups:
        for mode in (True, False):
            maps = [{}, {"kind": "bias"}, {"kind": "diagonal", "prior": 50}, {"kind": "diagonal"}]
            maps += [{"kind": "discriminative", "lam": lam} for lam in (0.1, 1.0)]
            maps += [{"soft": True}] if not mode else []
            maps += [{"means": True}] if class_means else []
            rows += [{"supervised": mode, "prior": PRIOR, **m} for m in maps]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="bundle (default: the shipped default)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the synthetic LMDBs (kept; default: a temporary one)")  # fmt: skip
    parser.add_argument("--per-char", type=int, default=2, help="samples per class and style")
    parser.add_argument("--stroke-writers", type=int, default=8, help="writers of strokes style")
    parser.add_argument("--sets", nargs="+", choices=(*SETS, *HABIT_SETS), default=list(SETS),
                        help="writer sets (default: font skeleton strokes; an online bundle takes strokes, habits and stroke-habits only)")  # fmt: skip
    parser.add_argument("--habit-writers", type=int, default=8,
                        help="writers of each habits set (online bundles; `habit_samples`)")  # fmt: skip
    parser.add_argument("-k", type=int, nargs="+", default=[200],
                        help="adaptation samples per writer (several: a table for each)")  # fmt: skip
    parser.add_argument("--per-set", action="store_true",
                        help="a table for each writer set as well as one for all writers")  # fmt: skip
    parser.add_argument("--draws", type=int, default=3, help="random draws of k per writer")
    parser.add_argument("--threads", type=int, default=1, help="model threads (default: 1)")
    parser.add_argument("--grid", nargs="+", choices=GROUPS, default=list(GROUPS),
                        help="groups of settings to score (default: all)")  # fmt: skip
    parser.add_argument("--prototypes", type=Path, nargs="+", default=None, metavar="DB.lmdb",
                        help="also score class-mean prototypes on these LMDBs (as `hccr adapt --prototypes`; e.g. `hccr-data synth --split train` output)")  # fmt: skip
    parser.add_argument("--priors", type=float, nargs="+", default=list(PRIORS),
                        help=f"priors of the prior group (default: {' '.join(map(str, PRIORS))})")  # fmt: skip
    parser.add_argument("--adabn", action="store_true",
                        help="also score BatchNorm statistics re-estimated on the (first) k samples")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recognizer.from_bundle(args.model, num_threads=args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sets = make_sets(work, rec, args.per_char, args.sets)
        writers = synthetic_writers(
            rec,
            sets,
            args.stroke_writers,
            "copies" in args.grid,
            args.adabn,
            args.habit_writers,
            tuple(s for s in HABIT_SETS if s in args.sets),
        )
    means = None
    if args.prototypes is not None:
        from hccr.commands.adapt import prototypes_from_lmdbs

        means = prototypes_from_lmdbs(rec, args.prototypes, progress=False)
    groups = {"all": writers}
    if args.per_set:
        for w in writers:
            groups.setdefault(w["name"].rsplit(" ", 1)[0], []).append(w)
    rows = []
    for (group, members), k in itertools.product(groups.items(), args.k):
        dev = Dev(rec, members, k, args.draws, means)
        if len(groups) > 1 or len(args.k) > 1:
            print(f"\n{group} writers, k = {k}:\n")
        print(f"{rec.name} ({rec.profile_backend} features), k = {k}, {args.draws} draws; "
              f"writers and their error: " + ", ".join(f"{w['name']} {100 * w['base']:.1f}%"
                                                      for w in members), file=sys.stderr)  # fmt: skip
        print(
            "| mode | map | prior | gamma | copies (weight) | rounds | confidence | error change "
            "(writers >= 1% error) | easy writers, pt |\n| --- | --- | ---: | ---: | --- | ---: "
            "| --- | ---: | ---: |"
        )
        for setting in grid(
            args.grid, means is not None, [p if p % 1 else int(p) for p in args.priors]
        ):
            result = {"set": group, "k": k, **setting, **dev.score(**setting)}
            rows.append(result)
            print(_fmt(setting, result), flush=True)
    if args.adabn:
        for last_only in (False, True):
            result = adabn(rec, writers, args.k[0], last_only)
            rows.append({"adabn": "feature layer" if last_only else "all layers", **result})
            print(f"| unsupervised | BatchNorm statistics re-estimated ("
                  f"{rows[-1]['adabn']}), draw 0 | - | - | - | - | - | "
                  f"{100 * result['error_change']:+.1f}% | {result['easy_change_pt']:+.2f} |",
                  flush=True)  # fmt: skip
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    if args.json is not None:
        summary = [{"name": w["name"], "base_error": w["base"], "adapt": len(w["adapt_y"]),
                    "test": len(w["test_y"])} for w in writers]  # fmt: skip
        args.json.write_text(json.dumps({"writers": summary, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
