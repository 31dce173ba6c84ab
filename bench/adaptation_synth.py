"""Choosing the writer-adaptation settings (`hccr.adapt.StmConfig`) on synthetic writers only.

The method is checked on real writers nobody here has, so its settings must not be fitted to
the real writers of `bench/adaptation.py`. Here each synthetic writer is one hand:

- `font` and `skeleton` styles of the held-out font families (`hccr-data synth --split val`):
  one writer per font face (the LMDB's writer id), each sample warped on its own;
- `strokes` style (`--split val` seed stream), dealt at random to `--stroke-writers` writers,
  each with one fixed slant, rotation, aspect ratio and pen weight (dilated or eroded by one
  pixel) applied to all of its samples, renormalised as the recogniser would.

As in `bench/adaptation.py`, each writer adapts on k samples of classes 0-1,876 (`--draws` random
draws) and is tested on all of its samples of classes 1,877-3,754, through the recogniser's
adapted path (features of the export cut before its classifier, then the folded classifier:
identical to `Recognizer.probabilities(x, profile)`). The score of a setting is the mean
relative error change over the writers whose error is at least 1% (fewer errors make the ratio
noise); the writers below, which the model already reads, report their mean change in points
(the harm a setting does there). Settings tried: the prior (beta) and the bias prior (gamma),
the k samples augmented with small affine copies, and for unsupervised, confidence weighting
(probability to a power, a cut) and a second round of self-labelling with the adapted map.

  python bench/adaptation_synth.py --model models/gb1-student [--work DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hccr.adapt import fit_stm, weight_prototypes
from hccr.lmdb_format import decode_sample, open_lmdb, read_meta, sample_key
from hccr.preprocess import EmptyImageError, normalize
from hccr.recognizer import Recognizer

HALF = 1877  # as bench/adaptation.py: classes 0-1,876 adapt, 1,877-3,754 test
SETS = {"font": ("font=1", 23), "skeleton": ("skeleton=1", 24), "strokes": ("strokes=1", 25)}
BATCH = 256
NUM_AUG = 4  # affine copies made of each adaptation sample


def make_sets(work: Path, model: Recognizer, per_char: int) -> dict[str, Path]:
    out = {}
    for name, (styles, seed) in SETS.items():
        db = work / f"{name}.lmdb"
        if not db.exists():
            cmd = [sys.executable, "-m", "data_tools.cli", "synth", "-o", str(db), "--split", "val",
                   "--styles", styles, "--seed", str(seed), "--per-char", str(per_char),
                   "--size", str(model.norm.size), "--norm", model.norm.method, "--no-progress"]  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True)
        out[name] = db
    return out


def load(db: Path, rec: Recognizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, class indices in the model's charset, writer ids)."""
    meta = read_meta(db)
    if list(meta["charset"]) != list(rec.charset.chars):
        raise SystemExit(f"{db}: another charset than {rec.name}'s")
    size = int(meta["image_size"])
    images, labels, writers = [], [], []
    with open_lmdb(db).begin(buffers=True) as txn:
        for i in range(int(meta["num_samples"])):
            image, label, writer = decode_sample(bytes(txn.get(sample_key(i))), size)
            images.append(image)
            labels.append(label)
            writers.append(writer)
    return np.stack(images), np.array(labels), np.array(writers)


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


def apply_style(image: np.ndarray, style: dict[str, float], rec: Recognizer) -> np.ndarray:
    a = np.deg2rad(style["angle"])
    rotate = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    matrix = rotate @ np.array([[style["aspect"], style["shear"]], [0.0, 1.0 / style["aspect"]]])
    out = _warp(image, matrix, np.zeros(2), pad=image.shape[0] // 2)
    if style["weight"]:
        op = cv2.dilate if style["weight"] > 0 else cv2.erode
        out = op(out, np.ones((3, 3), np.uint8))
    try:
        return normalize(out, rec.norm)
    except EmptyImageError:  # eroded away: keep the unstyled sample
        return image


def small_affine(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One augmentation copy: +-6 degrees, +-0.12 shear, 0.9-1.1 scale, +-2 px shift."""
    a = np.deg2rad(rng.uniform(-6, 6))
    rotate = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    sx, sy = rng.uniform(0.9, 1.1, 2)
    matrix = rotate @ np.array([[sx, rng.uniform(-0.12, 0.12)], [0.0, sy]])
    return _warp(image, matrix, rng.uniform(-2, 2, 2))


def features(rec: Recognizer, images: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [rec.features(images[i : i + BATCH]).numpy() for i in range(0, len(images), BATCH)]
    )


def synthetic_writers(rec: Recognizer, dbs: dict[str, Path], stroke_writers: int) -> list[dict]:
    writers = []
    aug_rng = np.random.default_rng(0)
    for name, db in dbs.items():
        images, labels, ids = load(db, rec)
        if name == "strokes":  # one style a writer, samples dealt at random
            ids = np.random.default_rng(7).integers(0, stroke_writers, len(labels))
            styles = [writer_style(w) for w in range(stroke_writers)]
            images = np.stack(
                [apply_style(im, styles[w], rec) for im, w in zip(images, ids, strict=True)]
            )
        for w in np.unique(ids):
            adapt = np.where((ids == w) & (labels < HALF))[0]
            test = np.where((ids == w) & (labels >= HALF))[0]
            augmented = np.stack([small_affine(images[i], aug_rng) for i in adapt
                                  for _ in range(NUM_AUG)])  # fmt: skip
            writers.append({
                "name": f"{name} {w}", "adapt_f": features(rec, images[adapt]),
                "adapt_y": labels[adapt], "test_f": features(rec, images[test]),
                "test_y": labels[test],
                "aug_f": features(rec, augmented).reshape(len(adapt), NUM_AUG, -1),
            })  # fmt: skip
    return writers


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class Dev:
    """The synthetic writers and the model's float classifier (W, c)."""

    def __init__(self, rec: Recognizer, writers: list[dict], k: int, draws: int) -> None:
        W, c = rec.classifier_affine()
        self.W, self.c = W.numpy().astype(np.float64), c.numpy().astype(np.float64)
        self.writers, self.k, self.draws = writers, k, draws
        for w in writers:
            w["base"] = self.error(w, np.eye(self.W.shape[1]), np.zeros(self.W.shape[1]))

    def error(self, writer: dict, A: np.ndarray, b: np.ndarray) -> float:
        logits = (writer["test_f"] @ A.T + b) @ self.W.T + self.c
        return float((logits.argmax(1) != writer["test_y"]).mean())

    def fit(self, S, y, weights, supervised, prior, gamma, rounds, power, cut):
        protos = weight_prototypes(self.W, float(np.linalg.norm(S, axis=1).mean()))
        if supervised:
            return fit_stm(S, protos[y], weights, prior, gamma)
        d = S.shape[1]
        A, b = np.eye(d), np.zeros(d)
        for _ in range(rounds):  # label with the current map, refit from the identity
            p = _softmax((S @ A.T + b) @ self.W.T + self.c)
            conf, pred = p.max(1), p.argmax(1)
            keep = conf >= cut
            A, b = fit_stm(S[keep], protos[pred[keep]], (weights * conf**power)[keep], prior, gamma)
        return A, b

    def score(self, supervised=True, prior=200.0, gamma=0.0, copies=0, copy_weight=1.0,
              rounds=1, power=1.0, cut=0.0) -> dict:  # fmt: skip
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
                A, b = self.fit(S, y, weights, supervised, prior, gamma, rounds, power, cut)
                err = self.error(w, A, b)
                if w["base"] >= 0.01:
                    changes.append((err - w["base"]) / w["base"])
                else:
                    easy.append(err - w["base"])
        return {"error_change": float(np.mean(changes)),
                "easy_change_pt": 100 * float(np.mean(easy)) if easy else 0.0}  # fmt: skip


def _fmt(setting: dict, result: dict) -> str:
    copies = setting.get("copies", 0)
    weight = setting.get("copy_weight", 1.0)
    mode = "supervised" if setting["supervised"] else "unsupervised"
    power, cut = setting.get("power", 1.0), setting.get("cut", 0.0)
    confidence = "-" if setting["supervised"] else f"p^{power:g}, cut {cut:g}"
    return (
        f"| {mode} | {setting['prior']} | {setting.get('gamma', 0.0):g} | "
        f"{f'{copies} ({weight:g})' if copies else '-'} | {setting.get('rounds', 1)} | "
        f"{confidence} | {100 * result['error_change']:+.1f}% | {result['easy_change_pt']:+.2f} |"
    )


def grid() -> list[dict]:
    rows: list[dict] = []
    for mode in (True, False):
        for prior in (50, 100, 200, 300, 400, 600, 800):
            rows.append({"supervised": mode, "prior": prior})
        rows.append({"supervised": mode, "prior": 400, "gamma": 1.0})
        for copies in (2, 4):  # the prior counts samples: scaled too, for the same pull
            for prior in (400, 400 * (1 + copies)):
                for weight in (1.0, 0.5):
                    rows.append({"supervised": mode, "prior": prior, "copies": copies,
                                 "copy_weight": weight})  # fmt: skip
    for extra in ({"rounds": 2}, {"power": 0.0}, {"power": 2.0}, {"cut": 0.3},
                  {"rounds": 2, "power": 2.0}):  # fmt: skip
        rows.append({"supervised": False, "prior": 400, **extra})
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
    parser.add_argument("-k", type=int, default=200, help="adaptation samples per writer")
    parser.add_argument("--draws", type=int, default=3, help="random draws of k per writer")
    parser.add_argument("--threads", type=int, default=1, help="model threads (default: 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recognizer.from_bundle(args.model, num_threads=args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        writers = synthetic_writers(rec, make_sets(work, rec, args.per_char), args.stroke_writers)
    dev = Dev(rec, writers, args.k, args.draws)
    print(f"{rec.name} ({rec.profile_backend} features), k = {args.k}, {args.draws} draws; "
          f"writers and their error: " + ", ".join(f"{w['name']} {100 * w['base']:.1f}%"
                                                  for w in writers), file=sys.stderr)  # fmt: skip
    print(
        "| mode | prior | gamma | copies (weight) | rounds | confidence | error change "
        "(writers >= 1% error) | easy writers, pt |\n| --- | ---: | ---: | --- | ---: | --- "
        "| ---: | ---: |"
    )
    rows = []
    for setting in grid():
        result = {**setting, **dev.score(**setting)}
        rows.append(result)
        print(_fmt(setting, result), flush=True)
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    if args.json is not None:
        summary = [{"name": w["name"], "base_error": w["base"], "adapt": len(w["adapt_y"]),
                    "test": len(w["test_y"])} for w in writers]  # fmt: skip
        args.json.write_text(json.dumps({"writers": summary, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
