"""Where the writer map acts: before the feature layer's ReLU (shipped) or after it.

`hccr adapt` maps the feature layer's pre-activation z (FC + BatchNorm, before the ReLU that
zeroes about half of the 128 entries), and the logits are W relu(A z + b) + c. This scores the
same closed-form STM (`hccr.adapt.fit_stm`) in four places and targets, on the same draws:
after the ReLU, logits W (A relu(z) + b) + c, towards the classifier's rows or towards class
means of relu(z); and before it, towards class means of z (`hccr adapt --prototypes`) or towards
the rows (as shipped). The class means are taken on `--means` (synthetic LMDBs of the bundle's
input kind, e.g. its validation and calibration sets).

Features through the recogniser's profile path (`Recognizer.pre_features`: the export cut at
the pre-activation, else the float model). Online writer only, bench/adaptation.py's protocol:
adapt on k characters drawn from the first half of the charset's order, test on every character
of the second half, `--repeats` draws; the error change is against the unadapted path on the
same test set.

    python bench/adaptation_prerelu.py --model models/gb1-online \\
        --pot ../shared/data/olhwdb1.0-writer001.pot \\
        --means data/online-val.lmdb data/online-calib.lmdb
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hccr.adapt import StmConfig, class_means, fit_stm, weight_prototypes
from hccr.recognizer import Recognizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adaptation import _batched, _half, labelled_samples, load_online  # noqa: E402

MAPS = (
    "after ReLU, classifier rows",
    "after ReLU, class means",
    "before ReLU, class means",
    "before ReLU, classifier rows (shipped)",
)


def pre_features(rec: Recognizer, x: np.ndarray) -> np.ndarray:
    """(N, feat_dim) pre-activations of the feature layer, as `hccr adapt` computes them."""
    return _batched(rec.pre_features, x).numpy().astype(np.float64)


def _top1(z: np.ndarray, labels: np.ndarray, W, c, A=None, b=None, before_relu=False) -> float:
    """Top-1 of W relu(A z + b) + c (before_relu) or W (A relu(z) + b) + c."""
    d = z.shape[1]
    A = np.eye(d) if A is None else A
    b = np.zeros(d) if b is None else b
    f = np.maximum(z @ A.T + b, 0) if before_relu else np.maximum(z, 0) @ A.T + b
    return float(((f @ W.T + c).argmax(1) == labels).mean())


def rows_for(z, labels, W, c, means_pre, means_post, ks, repeats, prior) -> list[dict]:
    half = len(W) // 2
    first, second = np.where(labels < half)[0], np.where(labels >= half)[0]
    zt, yt = z[second], labels[second]
    plain = _top1(zt, yt, W, c)
    rows = []
    for k in ks:
        for supervised in (True, False):
            after: dict[str, list[float]] = {m: [] for m in MAPS}
            for r in range(repeats):
                sel = first[np.random.default_rng(r).choice(len(first), k, replace=False)]
                za, post = z[sel], np.maximum(z[sel], 0)
                if supervised:
                    y, w = labels[sel], None
                else:  # the model's answers, weighted by their probability (hccr adapt's way)
                    logits = post @ W.T + c
                    p = np.exp(logits - logits.max(1, keepdims=True))
                    p /= p.sum(1, keepdims=True)
                    y, w = p.argmax(1), p.max(1)
                rows_protos = weight_prototypes(W, float(np.linalg.norm(post, axis=1).mean()))
                for name, source, targets, before in (
                    (MAPS[0], post, rows_protos, False),
                    (MAPS[1], post, means_post, False),
                    (MAPS[2], za, means_pre, True),
                    (MAPS[3], za, rows_protos, True),
                ):
                    A, b = fit_stm(source, targets[y], w, prior)
                    after[name].append(_top1(zt, yt, W, c, A, b, before_relu=before))
            for name, accs in after.items():
                mean = float(np.mean(accs))
                rows.append({"map": name, "k": k, "mode": "supervised" if supervised else
                             "unsupervised", "n_test": len(yt), "draws": repeats,
                             "top1_plain": plain, "top1_adapted": mean,
                             "error_reduction": (mean - plain) / (1 - plain) if plain < 1 else 0.0})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="bundle (default: the shipped default)")
    parser.add_argument("--pot", type=Path, required=True, help="one online writer's .pot file")
    parser.add_argument("--means", type=Path, nargs="+", required=True,
                        help="synthetic LMDBs of the bundle's input kind for the class means")  # fmt: skip
    parser.add_argument("--ks", type=int, nargs="+", default=[200], help="adaptation set sizes")
    parser.add_argument("--repeats", type=int, default=5, help="draws per k")
    parser.add_argument("--prior", type=float, default=StmConfig.prior, help="STM prior")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"),
                        help="the recogniser's backend (default: auto, the bundle's export)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    start = time.perf_counter()
    rec = Recognizer.from_bundle(args.model, backend=args.backend)
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = load_online(args.pot, rec, Path(tmp))
    z = pre_features(rec, images)
    means_x, ys = labelled_samples(args.means, rec)
    zs = pre_features(rec, means_x)
    W, c = (t.numpy().astype(np.float64) for t in rec.classifier_affine())
    n = len(rec.charset)
    means_post = class_means(np.maximum(zs, 0), ys, n, weight_prototypes(W, 1.0))
    means_pre = class_means(zs, ys, n, np.zeros((n, z.shape[1])))
    rows = rows_for(z, labels, W, c, means_pre, means_post, args.ks, args.repeats, args.prior)
    print(f"{rec.name} ({rec.profile_backend} features), {len(zs)} synthetic samples for the means, prior "
          f"{args.prior:g}; writer's classes {_half(rec)}+ tested")  # fmt: skip
    print("| map | k | mode | top-1 plain | top-1 adapted | error change |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['map']} | {r['k']} | {r['mode']} | {100 * r['top1_plain']:.1f}% | "
              f"{100 * r['top1_adapted']:.1f}% | {-100 * r['error_reduction']:+.1f}% |")  # fmt: skip
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
