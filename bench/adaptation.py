"""Writer adaptation (style transfer mapping, `hccr adapt`) on real writers: top-1 before / after.

Image and online bundles (`--model`, several measured in turn in one run). Online writer (a
CASIA OLHWDB `.pot` file, packed with `hccr-data pack`: pen-rendered images for an image
bundle, trajectories drawn with its TrajectoryConfig for an online one, as `hccr adapt` reads
them): adapt on k characters drawn at random from the first half of the charset's order
(GB2312 level-1 classes 0-1,876), test on every character of the second half (1,877-3,754), so
adaptation and test never share a character; each k is drawn `--repeats` times. Offline writer
(a folder of one writer's scans, labelled by `labels.csv` or the first character of each file
name; image bundles only): adapt on a random half, test on the other half, over `--splits`
random splits. Supervised uses the labels of the adaptation samples; unsupervised ignores them
(the model's answers, weighted by their probability).

Prototypes (the map's targets): the classifier's rows, as `hccr adapt` takes them;
`--prototypes` adds class means on LMDBs (as `hccr adapt --prototypes`).

Three top-1 figures per row: "plain" is the recogniser as shipped (`Recognizer.probabilities`,
the bundle's ONNX export by default); "identity map" is the adapted path with A = I, b = 0 (the
export cut at the feature layer's pre-activation, then the ReLU and the float classifier; an
int8 export quantises the feature after its ReLU, which this path does not); "adapted" is that
path with the writer's profile (`Recognizer.probabilities(..., profile=)`; the test features are
computed once through that path and each profile's map and the classifier applied to them, the
same arithmetic). The error change is adapted vs identity map: what the map itself does.
`--latency` times plain vs a profile set for every call (inserted into the export) vs a profile
passed per call, on the same machine, interleaved, and the cost of applying a new profile
either way.

  python bench/adaptation.py --model models/gb1-online models/gb1-student \\
      --pot ../shared/data/olhwdb1.0-writer001.pot --offline ../shared/data/hwdb-onewriter101 \\
      [--prototypes data/synth-proto.lmdb] --latency
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hccr.adapt import Adapter, StmConfig
from hccr.commands.adapt import iter_samples, prototypes_from_lmdbs
from hccr.preprocess import preprocess
from hccr.recognizer import Recognizer


# the first half of the charset's order adapts, the second is tested: GB2312 level-1 classes
# 0-1,876 and 1,877-3,754
def _half(rec: Recognizer) -> int:
    return len(rec.charset) // 2


KS = (20, 50, 100, 200, 500)
CONFIG = StmConfig()  # --prior / --min-confidence change it
BATCH = 256


def _batched(fn, images: np.ndarray) -> torch.Tensor:
    return torch.cat([fn(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])


def _top1(probs: torch.Tensor, labels: np.ndarray) -> float:
    return float((probs.argmax(1).numpy() == labels).mean())


def _adapt(rec, feats, labels, prototypes, supervised: bool):
    adapter = Adapter(rec, CONFIG, prototypes)  # prototypes None: the classifier's rows
    if supervised:
        adapter.add_features(feats, labels)
    else:
        adapter.add_unlabelled_features(feats)
    return adapter.fit()


def _after(rec, feats: np.ndarray, labels: np.ndarray, profile) -> float:
    """Top-1 through the adapted path on features computed once: W relu(A z + b) + c on the cut
    export's pre-activations, what `rec.probabilities(x, profile)` computes for each call."""
    W, c = rec.classifier_affine()
    A, b = torch.from_numpy(profile.A), torch.from_numpy(profile.b)
    return _top1(torch.relu(torch.from_numpy(feats) @ A.T + b) @ W.T + c, labels)


def load_online(pot: Path, rec: Recognizer, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    """Writer `pot`'s samples as `rec` reads them: pen-rendered images for an image model, the
    trajectory maps drawn with its TrajectoryConfig for an online one (`hccr adapt`'s reading)."""
    db = tmp / f"online-{rec.input_kind}.lmdb"
    cmd = [sys.executable, "-m", "data_tools.cli", "pack", str(pot), "-o", str(db),
           "--no-progress", "--size", str(rec.norm.size), "--norm", rec.norm.method,
           "--input", rec.input_kind]  # fmt: skip
    if rec.trajectory is not None:
        cmd.append("--pen-up" if rec.trajectory.pen_up else "--no-pen-up")
    subprocess.run(cmd, check=True, capture_output=True)
    return labelled_samples([db], rec)


def labelled_samples(dbs: list[Path], rec: Recognizer) -> tuple[np.ndarray, np.ndarray]:
    """The samples of `rec`'s characters in LMDBs, as `rec` reads them, with class indices."""
    images, labels = [], []
    for db in dbs:
        for image, char, _ in iter_samples(db, rec.norm, labelled=True, trajectory=rec.trajectory):
            if char in rec.charset:
                images.append(image)
                labels.append(rec.charset.index(char))
    return np.stack(images), np.array(labels)


def load_offline(folder: Path, rec: Recognizer) -> tuple[np.ndarray, np.ndarray]:
    names: dict[str, str] = {}
    table = folder / "labels.csv"
    if table.is_file():
        with open(table, encoding="utf-8") as f:
            for row in csv.reader(f):
                if len(row) >= 2 and len(row[1]) == 1:
                    names[row[0]] = row[1]
    images, labels = [], []
    for path in sorted(folder.glob("*.png")):
        char = names.get(path.name, path.stem[0])
        if char in rec.charset:
            from PIL import Image

            with Image.open(path) as im:
                images.append(preprocess(im, rec.norm))
            labels.append(rec.charset.index(char))
    return np.stack(images), np.array(labels)


def identity_profile(rec: Recognizer):
    """A profile whose map is the identity: the adapted path's own baseline (same features,
    same float classifier), which separates what the map does from what the path does."""
    from hccr.adapt import WriterProfile, charset_sha256

    d = rec.feat_dim
    return WriterProfile(A=np.eye(d, dtype=np.float32), b=np.zeros(d, np.float32),
                         weights_sha256=rec.weights_sha256, charset_sha256=charset_sha256(rec.charset),
                         num_classes=len(rec.charset), num_samples=0)  # fmt: skip


def online_rows(rec, images, labels, protos, repeats: int, ks=KS) -> list[dict]:
    half = _half(rec)
    first, second = np.where(labels < half)[0], np.where(labels >= half)[0]
    feats = _batched(rec.pre_features, images[first]).numpy()
    test_x, test_y = images[second], labels[second]
    test_f = _batched(rec.pre_features, test_x).numpy()
    plain = _top1(_batched(rec.probabilities, test_x), test_y)
    # the adapted path itself once, the features above for every profile after it
    identity = _top1(
        _batched(lambda x: rec.probabilities(x, identity_profile(rec)), test_x), test_y
    )
    assert abs(identity - _after(rec, test_f, test_y, identity_profile(rec))) < 2 / len(test_y)
    rows = []
    for name, P in protos.items():
        for k in ks:
            for supervised in (True, False):
                after = []
                for r in range(repeats):
                    sel = np.random.default_rng(r).choice(len(first), k, replace=False)
                    profile = _adapt(rec, feats[sel], labels[first][sel], P, supervised)
                    after.append(_after(rec, test_f, test_y, profile))
                rows.append(
                    _row("online", name, k, supervised, plain, identity, after, len(test_y))
                )
                rows[-1]["model"] = rec.name
                print(_fmt(rows[-1]), file=sys.stderr)
    return rows


def offline_rows(rec, images, labels, protos, splits: int) -> list[dict]:
    feats = _batched(rec.pre_features, images).numpy()
    probs = _batched(rec.probabilities, images)
    probs_identity = _batched(lambda x: rec.probabilities(x, identity_profile(rec)), images)
    rows = []
    half = len(labels) // 2
    for name, P in protos.items():
        for supervised in (True, False):
            plain, identity, after = [], [], []
            for r in range(splits):
                perm = np.random.default_rng(r).permutation(len(labels))
                a, t = perm[:half], perm[half:]
                profile = _adapt(rec, feats[a], labels[a], P, supervised)
                plain.append(_top1(probs[t], labels[t]))
                identity.append(_top1(probs_identity[t], labels[t]))
                after.append(_after(rec, feats[t], labels[t], profile))
            rows.append(_row("offline", name, half, supervised, float(np.mean(plain)),
                             float(np.mean(identity)), after, len(t)))  # fmt: skip
            rows[-1]["model"] = rec.name
            print(_fmt(rows[-1]), file=sys.stderr)
    return rows


def _row(kind, protos, k, supervised, plain, identity, after, n_test) -> dict:
    mean = float(np.mean(after))
    return {
        "writer": kind,
        "prototypes": protos,
        "k": k,
        "mode": "supervised" if supervised else "unsupervised",
        "n_test": n_test,
        "draws": len(after),
        "top1_plain": plain,
        "top1_identity": identity,
        "top1_adapted": mean,
        "top1_adapted_min": float(np.min(after)),
        "top1_adapted_max": float(np.max(after)),
        "error_reduction": (mean - identity) / (1.0 - identity) if identity < 1 else 0.0,
    }


HEADER = (
    "| model | writer | prototypes | k | mode | top-1 plain | top-1 identity map | "
    "top-1 adapted (min-max) | error vs identity |\n"
    "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"
)


def _fmt(row: dict) -> str:
    return (
        f"| {row.get('model', '')} | {row['writer']} | {row['prototypes']} | {row['k']} | {row['mode']} | "
        f"{100 * row['top1_plain']:.1f}% | {100 * row['top1_identity']:.1f}% | "
        f"{100 * row['top1_adapted']:.1f}% "
        f"({100 * row['top1_adapted_min']:.1f}-{100 * row['top1_adapted_max']:.1f}) | "
        f"{-100 * row['error_reduction']:+.1f}% |"
    )


def latency(rec: Recognizer, images: np.ndarray, profile, reps: int) -> list[dict]:
    """Median ms per call: plain, the profile set for every call (`set_profile`: inserted into
    a copy of the export) and the profile passed per call (the demo's path: the export cut at
    the pre-activation, then the map, the ReLU and the classifier in torch), interleaved so all
    three see the same load."""
    adapted = Recognizer.from_bundle(rec.path, backend=rec.backend, num_threads=rec._num_threads)
    adapted.set_profile(profile)
    out = []
    for batch in (1, 64):
        x = images[:batch]
        calls = {"plain": lambda x=x: rec.probabilities(x),
                 "set": lambda x=x: adapted.probabilities(x),
                 "per_call": lambda x=x: rec.probabilities(x, profile)}  # fmt: skip
        for call in calls.values():
            call()
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(reps):
            for name, call in calls.items():
                t = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t)
        ms = {name: 1000 * float(np.median(t)) for name, t in times.items()}
        out.append({"batch": batch, "plain_ms": ms["plain"], "profile_ms": ms["set"],
                    "ratio": ms["set"] / ms["plain"], "per_call_ms": ms["per_call"],
                    "per_call_ratio": ms["per_call"] / ms["plain"]})  # fmt: skip
    return out


def apply_cost(rec: Recognizer, profile, reps: int = 20) -> dict:
    """Median ms to apply a new profile: `set_profile` (builds its mapped session) vs the
    per-call path's first call with it (checks it and makes its tensors; what a demo pick pays)."""
    import dataclasses

    x = np.zeros((1, rec.channels, rec.norm.size, rec.norm.size), np.uint8)
    adapted = Recognizer.from_bundle(rec.path, backend=rec.backend, num_threads=rec._num_threads)
    fresh = [dataclasses.replace(profile, tensors={}) for _ in range(2 * reps)]  # nothing cached
    set_ms, call_ms = [], []
    for i in range(reps):
        t = time.perf_counter()
        adapted.set_profile(fresh[2 * i])
        set_ms.append(time.perf_counter() - t)
        t = time.perf_counter()
        rec.recognize_prepared(x, 1, profile=fresh[2 * i + 1])
        call_ms.append(time.perf_counter() - t)
    return {"set_profile_ms": 1000 * float(np.median(set_ms)),
            "per_call_first_ms": 1000 * float(np.median(call_ms)), "profile_path": adapted.profile_backend}  # fmt: skip


def run_model(model: str | None, args: argparse.Namespace) -> dict:
    """Every row (and with --latency, the timings) for one bundle."""
    rec = Recognizer.from_bundle(model, backend=args.backend, num_threads=args.threads)
    print(f"model {rec.name} ({rec.input_kind}), backend {rec.backend}, profile path "
          f"{rec.profile_backend}", file=sys.stderr)  # fmt: skip
    protos: dict[str, np.ndarray | None] = {"classifier rows": None}
    if args.prototypes is not None:
        names = ", ".join(p.name for p in args.prototypes)
        protos[f"class means ({names})"] = prototypes_from_lmdbs(rec, args.prototypes, False)
    rows: list[dict] = []
    result: dict = {"model": rec.name, "input": rec.input_kind, "backend": rec.backend,
                    "rows": rows}  # fmt: skip
    lat_images = None
    if args.pot is not None:
        with tempfile.TemporaryDirectory() as tmp:
            images, labels = load_online(args.pot, rec, Path(tmp))
        rows += online_rows(rec, images, labels, protos, args.repeats, args.ks)
        lat_images = images
    if args.offline is not None and rec.trajectory is None:  # scans: image models only
        images, labels = load_offline(args.offline, rec)
        rows += offline_rows(rec, images, labels, protos, args.splits)
        lat_images = images if lat_images is None else lat_images
    if args.latency and lat_images is not None:
        feats = _batched(rec.pre_features, lat_images[:200]).numpy()
        adapter = Adapter(rec, CONFIG)
        adapter.add_unlabelled_features(feats)
        profile = adapter.fit()
        result["latency"] = latency(rec, lat_images[200:264], profile, reps=200)
        result["apply_cost"] = apply_cost(rec, profile)
    return result


def print_latency(result: dict) -> None:
    lat, cost = result["latency"], result["apply_cost"]
    print(f"\n{result['model']}: profile set for every call: {cost['profile_path']}")
    print(
        "\n| batch | plain ms | profile set (inserted) ms | ratio | profile per call ms | ratio |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in lat:
        print(f"| {r['batch']} | {r['plain_ms']:.2f} | {r['profile_ms']:.2f} | {r['ratio']:.3f} "
              f"| {r['per_call_ms']:.2f} | {r['per_call_ratio']:.3f} |")  # fmt: skip
    print(
        f"\napplying a new profile: set_profile {cost['set_profile_ms']:.1f} ms, "
        f"first per-call use {cost['per_call_first_ms']:.1f} ms (median of 20)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", nargs="+", default=[None],
                        help="bundles, image or online, measured in turn (default: the shipped default)")  # fmt: skip
    parser.add_argument("--pot", type=Path, default=None, help="one online writer's .pot file")
    parser.add_argument("--offline", type=Path, default=None,
                        help="one writer's scans (folder; image models only)")  # fmt: skip
    parser.add_argument("--prototypes", type=Path, nargs="+", default=None,
                        help="also adapt towards class means on these LMDBs of the models' input kind (as `hccr adapt --prototypes`)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="draws per k (online)")
    parser.add_argument(
        "--ks",
        type=int,
        nargs="+",
        default=list(KS),
        help=f"adaptation set sizes (online; default: {' '.join(map(str, KS))})",
    )
    parser.add_argument("--prior", type=float, default=None, help="as `hccr adapt --prior`")
    parser.add_argument("--min-confidence", type=float, default=CONFIG.min_confidence,
                        help="as `hccr adapt --min-confidence`")  # fmt: skip
    parser.add_argument("--splits", type=int, default=20, help="random halvings (offline)")
    parser.add_argument("--threads", type=int, default=1, help="model threads (default: 1)")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"),
                        help="the recogniser's backend (default: auto, the bundle's export)")  # fmt: skip
    parser.add_argument("--latency", action="store_true", help="also time plain vs profile")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    CONFIG.min_confidence = args.min_confidence
    if args.prior is not None:
        CONFIG.prior = CONFIG.prior_unsupervised = args.prior
    start = time.perf_counter()
    results = [run_model(model, args) for model in args.model]
    print(HEADER)
    for result in results:
        for row in result["rows"]:
            print(_fmt(row))
    for result in results:
        if "latency" in result:
            print_latency(result)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
