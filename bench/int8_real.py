"""int8 on real handwriting: float ONNX vs int8 exports, per real set, and the shipping verdict.

The rule (issue 24): an int8 export ships only where its top-1 is within 0.5 pt of the float
ONNX export's on every real set; otherwise the bundle ships the float ONNX export. Real sets
come from `--real` (../shared/data, CASIA; see its README): never calibrated or trained on,
only measured here, by the person exporting, never at `hccr export` time.

  - online writer 001 (`olhwdb1.0-writer001.pot`, packed with `hccr-data pack`): its second half
    in GB order only (classes 1,877-3,754), the first half being open to fitting writer
    statistics;
  - offline scans: every image folder (`hwdb-train16`, `hwdb-onewriter101`), preprocessed as
    `hccr recognize` does (`Recognizer.prepare`); labels outside the charset are not scored.

The float ONNX reference is exported from the bundle's weights here. `--onnx NAME=PATH` adds
exports to compare (e.g. an earlier int8 export); `--recipe NAME=SPEC` quantises one here from
`--calib` (SPEC: `default`, the recipe of `hccr export --int8`; or `minmax`, `percentile:99.99`,
`entropy`, then `+exclude=NODE;NODE`, `+full-range` for 8-bit weights). `--check` LMDBs
(synthetic) are scored too, for comparison.

Measurements (`--sensitivity`, `--ranges`) that say where int8 loses:
  - sensitivity: quantise one Conv/Gemm at a time ("only") and leave one in float ("except"),
    with the first recipe's calibration; top-1 change against float on each real set;
  - ranges: per layer output, the 99.99th percentile and max of the float activations on each
    set, against the range the first `--onnx` / `--recipe` export clips to.

`--bundles DIR` writes a bundle copy per export (model.onnx with its record) for
`bench/recognize.py` and `bench/drawn_input.py`.

    python bench/int8_real.py --model models/gb1-student --real ../shared/data \\
        --onnx earlier=EARLIER_INT8.onnx --calib data/calib-mix.lmdb data/calib-strokes.lmdb \\
        --recipe fixed=default \\
        --check data/val.lmdb data/reallike.lmdb --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hccr.bundle import Bundle, load_bundle, resolve_model
from hccr.int8 import QUANTISABLE_OPS

WRITER001_SECOND_HALF = 1877  # first class index of writer 001's reported half (data README)
MAX_DROP_PT = 0.5  # the shipping rule's bound, in top-1 percentage points

Sets = dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (uint8 (N, S, S), labels (N,))


# ----- data ------------------------------------------------------------------------------------


def _lmdb_arrays(path: Path, min_label: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from hccr.dataset import LmdbDataset

    ds = LmdbDataset(path)
    items = ds.__getitems__(list(range(len(ds))))
    images = np.stack([im[0].numpy() for im, _ in items])
    labels = np.array([label for _, label in items])
    keep = labels >= min_label
    return images[keep], labels[keep]


def _pot_set(pot: Path, bundle: Bundle, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    db = tmp / f"{pot.stem}.lmdb"
    cmd = [sys.executable, "-m", "data_tools.cli", "pack", str(pot), "-o", str(db), "--no-progress",
           "--size", str(bundle.norm.size), "--norm", bundle.norm.method]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return _lmdb_arrays(db, WRITER001_SECOND_HALF)


def _folder_set(folder: Path, bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """Images under `folder` labelled by their one-character parent folder or first file-name
    character (bench/real_handwriting.py's rule); labels outside the charset are dropped."""
    from PIL import Image

    from hccr.preprocess import preprocess

    images, labels = [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg")):
        label = path.parent.name if len(path.parent.name) == 1 else path.stem[0]
        if label not in bundle.charset:
            continue
        with Image.open(path) as im:
            images.append(preprocess(im, bundle.norm))
        labels.append(bundle.charset.index(label))
    return np.stack(images), np.array(labels)


def load_real_sets(real: Path, bundle: Bundle, cache: Path | None) -> Sets:
    if cache is not None and cache.is_file():
        z = np.load(cache)
        names = [k[: -len("/x")] for k in z.files if k.endswith("/x")]
        return {n: (z[f"{n}/x"], z[f"{n}/y"]) for n in names}
    sets: Sets = {}
    with tempfile.TemporaryDirectory(prefix="hccr-int8-") as tmp:
        for pot in sorted(real.glob("*.pot")):
            sets[f"{pot.stem} (2nd half)"] = _pot_set(pot, bundle, Path(tmp))
    for folder in sorted(p for p in real.iterdir() if p.is_dir()):
        sets[folder.name] = _folder_set(folder, bundle)
    if cache is not None:  # real images: keep the cache out of the repository (data/ is ignored)
        np.savez(
            cache,
            **{f"{n}/{k}": a for n, xy in sets.items() for k, a in zip("xy", xy, strict=True)},
        )
    return sets


# ----- models ----------------------------------------------------------------------------------


class OnnxModel:
    def __init__(self, path: Path) -> None:
        from hccr.recognizer import onnx_session

        self.path = path
        self.session = onnx_session(path)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        from hccr.preprocess import to_model_input

        outs = []
        for start in range(0, len(images), batch):
            x = to_model_input(torch.from_numpy(images[start : start + batch, None])).numpy()
            outs.append(self.session.run(None, {self.input_name: x})[0])
        return np.concatenate(outs)


def model_speed(exports: dict[str, Path], images: np.ndarray, rounds: int = 7) -> dict[str, float]:
    """Images/s of each export, batch 256, all cores; rounds alternate between the exports so
    that all see the same machine load; the best round counts (shared CPU)."""
    import time

    models = {name: OnnxModel(p) for name, p in exports.items()}
    x = images[:256]
    best = dict.fromkeys(models, 0.0)
    for _ in range(rounds):
        for name, m in models.items():
            start = time.perf_counter()
            m.logits(x)
            best[name] = max(best[name], len(x) / (time.perf_counter() - start))
    return best


def _parse_recipe(spec: str) -> dict:
    """`percentile:99.99+exclude=a;b` -> quantize_onnx_int8 keyword arguments."""
    head, *opts = spec.split("+")
    method, _, pct = head.partition(":")
    kwargs: dict = {"method": method}
    if pct:
        kwargs["percentile"] = float(pct)
    for opt in opts:
        key, _, value = opt.partition("=")
        if key == "full-range":  # 8-bit weights: a measurement (VNNI CPUs only)
            kwargs["reduce_range"] = False
            continue
        if key != "exclude":
            raise SystemExit(
                f"--recipe {spec}: unknown option {key!r} (known: exclude, full-range)"
            )
        kwargs["exclude"] = [v for v in value.split(";") if v]
    return kwargs


def quantise(float_onnx: Path, out: Path, calib: Sequence[Path], num_calib: int, **kw) -> Path:
    from hccr.int8 import LmdbCalibrationReader, quantize_onnx_int8

    return quantize_onnx_int8(float_onnx, out, LmdbCalibrationReader(calib, num_calib), **kw)


def quantisable_nodes(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in QUANTISABLE_OPS]


# ----- measurements ----------------------------------------------------------------------------


def score(model: OnnxModel, sets: Sets, ref: dict[str, np.ndarray] | None) -> dict:
    """Per set: top-1 and (with `ref`, the float predictions) top-1 agreement."""
    out = {}
    for name, (x, y) in sets.items():
        pred = model.logits(x).argmax(1)
        row = {"n": len(y), "top1": float((pred == y).mean())}
        if ref is not None:
            row["agreement"] = float((pred == ref[name]).mean())
        out[name] = row
    return out


def sensitivity(float_onnx: Path, recipe: dict, args: argparse.Namespace, sets: Sets,
                float_top1: dict[str, float], tmp: Path) -> list[dict]:  # fmt: skip
    """Top-1 change (pt) against float per real set, one node quantised / one left in float."""
    nodes = quantisable_nodes(float_onnx)
    rows = []
    for mode in ("only", "except"):
        for node in nodes:
            exclude = [n for n in nodes if n != node] if mode == "only" else [node]
            kw = {**recipe, "exclude": sorted(set(exclude) | set(recipe.get("exclude", [])))}
            path = quantise(float_onnx, tmp / "sens.onnx", args.calib, args.num_calib, **kw)
            res = score(OnnxModel(path), sets, None)
            drops = {s: 100 * (res[s]["top1"] - float_top1[s]) for s in sets}
            rows.append({"mode": mode, "node": node, "delta_pt": drops})
            cells = " | ".join(f"{d:+.2f}" for d in drops.values())
            print(f"| {mode} {node} | {cells} |", flush=True)
    return rows


def _int8_ranges(path: Path) -> dict[str, float]:
    """tensor name -> the largest float value its QuantizeLinear represents (uint8)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    out = {}
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[1] in consts:
            scale, zp = consts[n.input[1]], consts.get(n.input[2], np.zeros(1))
            if np.size(scale) == 1:
                out[n.input[0]] = float(scale) * (255 - float(zp))
    return out


def activation_ranges(float_onnx: Path, int8: Path | None, sets: Sets, tmp: Path) -> list[dict]:
    """99.99th percentile and max of each Conv/Gemm output (after ReLU where fused) per set."""
    import onnx

    m = onnx.load(str(float_onnx))
    names = [n.output[0] for n in m.graph.node if n.op_type in QUANTISABLE_OPS + ("Relu",)]
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
    probe = tmp / "probe.onnx"
    onnx.save(m, str(probe))
    from hccr.recognizer import onnx_session

    session = onnx_session(probe)
    outputs = [o.name for o in session.get_outputs()]
    clip = _int8_ranges(int8) if int8 is not None else {}
    from hccr.preprocess import to_model_input

    stats: dict[str, dict[str, tuple[float, float]]] = {n: {} for n in names}
    for set_name, (x, _) in sets.items():
        idx = np.linspace(0, len(x) - 1, min(len(x), 512)).round().astype(int)
        inp = to_model_input(torch.from_numpy(x[idx, None])).numpy()
        values = dict(
            zip(outputs, session.run(None, {session.get_inputs()[0].name: inp}), strict=True)
        )
        for n in names:
            v = values[n]
            stats[n][set_name] = (float(np.percentile(v, 99.99)), float(v.max()))
    rows = []
    for n in names:
        clip_at = clip.get(n)
        rows.append({"tensor": n, "clip": clip_at, "sets": stats[n]})
        cells = " | ".join(f"{p:.2f} / {mx:.2f}" for p, mx in stats[n].values())
        print(f"| {n} | {'' if clip_at is None else f'{clip_at:.2f}'} | {cells} |")
    return rows


# ----- main ------------------------------------------------------------------------------------


def _write_bundle_copy(src: Path, export: Path, dst: Path, report: dict) -> None:
    from hccr.bundle import WEIGHTS_FILE
    from hccr.export import write_export_record

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.onnx*"))
    shutil.copy(export, dst / "model.onnx")
    write_export_record(dst / "model.onnx", dst / WEIGHTS_FILE, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="bundle (default: the shipped default)")
    parser.add_argument("--real", type=Path, required=True, help="folder of real sets (CASIA)")
    parser.add_argument("--onnx", nargs="*", default=[], metavar="NAME=PATH")
    parser.add_argument("--recipe", nargs="*", default=[], metavar="NAME=SPEC")
    parser.add_argument("--calib", type=Path, nargs="*", default=[], help="LMDBs for --recipe")
    parser.add_argument("--num-calib", type=int, default=1024)
    parser.add_argument("--check", type=Path, nargs="*", default=[], help="synthetic LMDBs")
    parser.add_argument("--sensitivity", action="store_true")
    parser.add_argument("--ranges", action="store_true")
    parser.add_argument("--speed", action="store_true", help="also time each export in-process")
    parser.add_argument("--cache", type=Path, default=None, help="npz cache of the real sets")
    parser.add_argument("--bundles", type=Path, default=None, help="write bundle copies here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.recipe and not args.calib:
        parser.error("--recipe needs --calib")

    from hccr.export import export_onnx

    folder = resolve_model(args.model)
    bundle = load_bundle(folder)
    real = load_real_sets(args.real, bundle, args.cache)
    synth = {p.stem: _lmdb_arrays(p) for p in args.check}
    sets = {**real, **synth}
    print(f"model: {folder}; real sets: "
          + ", ".join(f"{n} ({len(y)})" for n, (_, y) in real.items()))  # fmt: skip
    report: dict = {"model": str(folder), "exports": {}}
    with tempfile.TemporaryDirectory(prefix="hccr-int8-") as tmp_name:
        tmp = Path(tmp_name)
        exports = {"float ONNX": export_onnx(bundle.model, tmp / "float.onnx", bundle.norm.size)}
        for item in args.onnx:
            name, _, path = item.partition("=")
            exports[name] = Path(path)
        recipes = {}
        for item in args.recipe:
            name, _, spec = item.partition("=")
            out = tmp / f"{name}.onnx"
            if spec == "default":  # what `hccr export --int8` does (hccr.int8.Int8Config)
                from hccr.int8 import Int8Config, LmdbCalibrationReader, quantize_with_config

                reader = LmdbCalibrationReader(args.calib, args.num_calib)
                kept = quantize_with_config(exports["float ONNX"], out, reader, Int8Config())
                recipes[name] = {"method": Int8Config.calib_method, "exclude": kept}
            else:
                recipes[name] = _parse_recipe(spec)
                quantise(exports["float ONNX"], out, args.calib, args.num_calib, **recipes[name])
            exports[name] = out
        ref_model = OnnxModel(exports["float ONNX"])
        ref = {n: ref_model.logits(x).argmax(1) for n, (x, _) in sets.items()}
        results = {name: score(OnnxModel(p), sets, ref) for name, p in exports.items()}
        float_top1 = {s: r["top1"] for s, r in results["float ONNX"].items()}
        speed = model_speed(exports, next(iter(sets.values()))[0]) if args.speed else {}

        speed_head = " images/s (x float) |" if speed else ""
        print("\n| export | " + " | ".join(sets) + " | ships (rule) |" + speed_head)
        print("| --- |" + " ---: |" * len(sets) + " --- |" + (" ---: |" if speed else ""))
        for name, res in results.items():
            drops = [100 * (float_top1[s] - res[s]["top1"]) for s in real]
            ok = name == "float ONNX" or max(drops) <= MAX_DROP_PT
            cells = " | ".join(
                f"{100 * r['top1']:.2f}%" + (f" ({100 * r['agreement']:.1f}% agr.)"
                                             if name != "float ONNX" else "")
                for r in res.values()
            )  # fmt: skip
            verdict = "—" if name == "float ONNX" else ("yes" if ok else "no")
            rate = (f" {speed[name]:.0f} ({speed[name] / speed['float ONNX']:.2f}x) |"
                    if speed else "")  # fmt: skip
            print(f"| {name} | {cells} | {verdict} |{rate}")
            report["exports"][name] = {"path": str(exports[name]), "sets": res,
                                       "max_drop_pt": max(drops), "ships": ok,
                                       "images_per_s": speed.get(name)}  # fmt: skip
        int8_names = [n for n in results if n != "float ONNX"]
        shippable = [n for n in int8_names if report["exports"][n]["ships"]]
        print("\nverdict: " + (f"ship int8 ({', '.join(shippable)})" if shippable
                               else "ship the float ONNX export (no int8 within "
                               f"{MAX_DROP_PT} pt on every real set)"))  # fmt: skip

        if args.sensitivity:
            if not recipes:
                parser.error("--sensitivity needs a --recipe (its calibration is used)")
            first = next(iter(recipes.values()))
            print(f"\nsensitivity ({first}), top-1 change in pt on each real set")
            print("| node | " + " | ".join(real) + " |")
            report["sensitivity"] = sensitivity(
                exports["float ONNX"], first, args, real, float_top1, tmp
            )
        if args.ranges:
            clip_from = exports[int8_names[0]] if int8_names else None
            print(
                f"\nactivation ranges: 99.99th pct / max per set; clip = {int8_names[:1]}'s range"
            )
            print("| tensor | clip | " + " | ".join(sets) + " |")
            report["ranges"] = activation_ranges(exports["float ONNX"], clip_from, sets, tmp)
        if args.bundles is not None:
            args.bundles.mkdir(parents=True, exist_ok=True)
            for name, path in exports.items():
                dst = args.bundles / name.replace(" ", "-").lower()
                shutil.rmtree(dst, ignore_errors=True)
                _write_bundle_copy(folder, path, dst, {"int8": name != "float ONNX"})
            print(f"bundle copies in {args.bundles}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
