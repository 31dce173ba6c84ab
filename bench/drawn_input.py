"""Drawn input: top-1 / top-10 and ms/char on characters drawn as a mouse draws on the demo canvas.

Every GB2312 level-1 class with Make Me a Hanzi stroke medians (3,755 of 3,755) is drawn once,
the way a hand on a mouse draws it in the demo: stroke by stroke on the demo's 400 x 400
sheet with its round brush (radius `demo.app.BRUSH_RADIUS`), at a random size (40-85% of
the canvas), position, aspect, slant and rotation, each stroke slightly displaced and wobbling,
sampled at mouse-event spacing with per-point hand tremor and integer pixel coordinates. The
drawing is what the demo inks from the strokes: RGBA, black ink on a transparent background (`--background
white`: black on white RGB). The generator is this file's own (not `hccr-data synth`'s
`perturb_strokes`) and is seeded with `--seed` (default 1234; the training data used synth seeds
1 and 2). Each character's drawing depends only on the seed and its class, not on `--limit`.

Our bundles see the image through the demo's path, `Recognizer.recognize(image)` (hccr.preprocess
inside); ms/char is that call, batch 1, one thread. Peers on the same drawings, 1 thread, in a
subprocess of `--peer-python` (default: this interpreter):
  - RapidOCR's PP-OCRv6 text recogniser (`pip install rapidocr==3.10.0 onnxruntime`; weights are
    in the wheel): recognition model only, on the drawing cropped to its ink (what its detector
    would hand over; `--rapidocr-input canvas`: the whole canvas), composited on white; the first
    character of its string is its answer (top-1 only);
  - zinnia with the Tegaki zh_CN model (`apt-get install libzinnia0
    tegaki-zinnia-simplified-chinese`, through ctypes), fed the same jittered mouse points
    (zinnia is an online recogniser; it never sees the pixels): as drawn, in canvas coordinates,
    the way a canvas app calls it, and fitted to a centred box (its features are positions on
    the canvas, so the second row is its best case).
A peer that is not installed is reported as `skipped: ...`.

  python bench/drawn_input.py --limit 200                              # quick look
  python bench/drawn_input.py --peer-python /tmp/peers/bin/python --json drawn.json
  python bench/drawn_input.py --models models/gb1-student runs/x --save-images /tmp/drawn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_SEED = 1234  # never used for training data (`hccr-data synth` used seeds 1 and 2)
PEERS = ("rapidocr", "zinnia")
PPOCR = "PP-OCRv6 (RapidOCR rec)"
ZINNIA_MODEL = Path("/usr/share/tegaki/models/zinnia/handwriting-zh_CN.model")
_WARMUP = 10  # untimed calls before timing: first-call allocations, lazy session set-up
_STEP = 0.01  # resampling step (fraction of the character box) before the wobble is applied


# ----- drawing --------------------------------------------------------------------------------


def _resample(points: np.ndarray, positions: np.ndarray) -> np.ndarray:
    # points (N, 2) polyline -> points at arc-length `positions`
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    return np.stack([np.interp(positions, arc, points[:, i]) for i in (0, 1)], axis=1)


def _arc_length(points: np.ndarray) -> float:
    return float(np.hypot(*np.diff(points, axis=0).T).sum()) if len(points) > 1 else 0.0


def mouse_strokes(
    medians: list[np.ndarray], rng: np.random.Generator, side: int, brush_radius: float
) -> list[np.ndarray]:
    """A character's stroke medians as a hand on a mouse would draw them on a `side` px canvas.

    Args:
        medians: (N, 2) polylines in the unit box, x right, y down, in writing order.
        rng: the only source of randomness.
        side: canvas side in pixels.
        brush_radius: the brush radius in pixels (keeps the ink inside the canvas).

    Returns:
        One (M, 2) int32 array of canvas pixel coordinates (mouse events) per stroke.
    """
    strokes = []
    for s in medians:
        s = np.asarray(s, np.float64)
        length = _arc_length(s)
        u = np.linspace(0.0, 1.0, max(2, int(length / _STEP) + 2))
        p = _resample(s, u * length) if length > 0 else np.repeat(s[:1], len(u), axis=0)
        chord = p[-1] - p[0]
        normal = np.array([-chord[1], chord[0]]) / max(float(np.hypot(*chord)), 1e-6)
        # wobble: a slight bow plus a slower or faster sway across the stroke, in box units
        bow, sway = rng.normal(0.0, 0.012), rng.normal(0.0, 0.006)
        wave = bow * np.sin(np.pi * u) + sway * np.sin(
            2 * np.pi * rng.uniform(1, 2.5) * u + rng.uniform(0, 2 * np.pi)
        )
        p = p + wave[:, None] * normal + rng.normal(0.0, 0.015, 2)  # and a small misplacement
        strokes.append(p)
    # the whole character: size, aspect, slant (shear), rotation
    size = side * rng.uniform(0.4, 0.85)
    aspect, shear, angle = (
        np.exp(rng.normal(0.0, 0.08)),
        rng.normal(0.0, 0.15),
        rng.normal(0.0, 0.05),
    )
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a = size * rot @ np.array([[aspect, shear], [0.0, 1.0 / aspect]])
    strokes = [(p - 0.5) @ a.T for p in strokes]
    points = np.concatenate(strokes)
    lo, hi = points.min(axis=0), points.max(axis=0)
    room = side - 2 * (brush_radius + 2)  # ink stays on the canvas
    shrink = min(1.0, room / max(float((hi - lo).max()), 1e-6))
    lo, hi = lo * shrink, hi * shrink
    origin = brush_radius + 2 + rng.uniform(0.0, 1.0, 2) * (room - (hi - lo)) - lo
    # mouse events: spaced by the hand's speed (px per event), with tremor, on integer pixels
    spacing = rng.uniform(2.0, 8.0)
    out = []
    for p in strokes:
        p = p * shrink + origin
        length = _arc_length(p)
        steps = spacing * rng.uniform(0.6, 1.4, int(length / (0.6 * spacing)) + 2)
        at = np.concatenate([[0.0], np.cumsum(steps)])
        at = np.append(at[at < length], length)
        q = _resample(p, at) + rng.normal(0.0, 0.6, (len(at), 2))
        q = np.clip(np.rint(q), 0, side - 1).astype(np.int32)
        keep = np.concatenate([[True], (np.diff(q, axis=0) != 0).any(axis=1)])
        out.append(q[keep])  # a mouse that has not moved sends no event
    return out


def canvas_image(ink: np.ndarray, background: str) -> np.ndarray:
    """An ink map -> the demo's drawing: RGBA black ink on transparent, or RGB black on white."""
    if background == "transparent":
        image = np.zeros((*ink.shape, 4), np.uint8)
        image[..., 3] = ink
        return image
    return np.repeat((255 - ink)[..., None], 3, axis=2)


def draw_set(
    chars: list[str], class_ids: list[int], seed: int, side: int, brush_radius: float
) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """(N, side, side) ink maps and the mouse strokes of every char.

    Char i's drawing depends only on (seed, class_ids[i]).
    """
    from data_tools.render import render_canvas
    from data_tools.strokes import load_medians

    medians = load_medians()
    inks, strokes = np.empty((len(chars), side, side), np.uint8), []
    for i, (ch, k) in enumerate(zip(chars, class_ids, strict=True)):
        s = mouse_strokes(medians.get(ch), np.random.default_rng([seed, k]), side, brush_radius)
        strokes.append(s)
        inks[i] = render_canvas(s, side, brush_radius)
    return inks, strokes


# ----- our bundles ----------------------------------------------------------------------------


def score_bundle(
    path: Path, inks: np.ndarray, labels: list[str], background: str, backend: str
) -> dict:
    """Top-1 / top-10 and per-call latency of `Recognizer.recognize(image)` (batch 1, 1 thread)."""
    from hccr.recognizer import Recognizer

    rec = Recognizer.from_bundle(path, backend=backend, num_threads=1)
    for ink in inks[:_WARMUP]:
        rec.recognize(canvas_image(ink, background), topk=10)
    times, top1, top10, misses = [], 0, 0, []
    for ink, label in zip(inks, labels, strict=True):
        image = canvas_image(ink, background)  # made per call: 3,755 RGBA canvases are 2.4 GB
        start = time.perf_counter()
        top = rec.recognize(image, topk=10)[0]
        times.append(time.perf_counter() - start)
        chars = [c.char for c in top]
        top1 += chars[0] == label
        top10 += label in chars
        if chars[0] != label:
            misses.append(label + chars[0])
    return {
        "name": rec.name,
        "path": str(path),
        "backend": rec.backend,
        "n": len(labels),
        "top1": top1 / len(labels),
        "top10": top10 / len(labels),
        **_latency(times),
        "misses": misses,  # "label, top-1" pairs
    }


def _latency(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {
        "ms_per_char": float(ms.mean()),
        "ms_p50": float(np.median(ms)),
        "ms_p90": float(np.percentile(ms, 90)),
    }


# ----- peers (run in a subprocess by --peer-python; numpy and the peer only, no hccr) ---------


def _ink_box(ink: np.ndarray, margin: float = 0.1) -> tuple[slice, slice]:
    # the ink's bounding box grown by `margin` of its longer side: a text detector's crop
    ys, xs = np.nonzero(ink)
    pad = int(margin * max(np.ptp(ys), np.ptp(xs))) + 2
    h, w = ink.shape
    return slice(max(0, ys.min() - pad), min(h, ys.max() + pad + 1)), slice(
        max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    )


def run_rapidocr(inks: np.ndarray, labels: list[str], crop: bool) -> dict:
    """PP-OCRv6 recognition model alone (RapidOCR, 1 thread) on each drawing, black on white."""
    try:
        from importlib.metadata import version

        from rapidocr import RapidOCR
    except ImportError as e:
        return {
            "skipped": f"rapidocr not importable in {sys.executable} ({e}); "
            "pip install rapidocr==3.10.0 onnxruntime"
        }
    engine = RapidOCR(
        params={
            "Global.log_level": "error",
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )

    def rgb(ink: np.ndarray) -> np.ndarray:  # black on white, cropped (outside the timing)
        box = _ink_box(ink) if crop else (slice(None), slice(None))
        return np.repeat((255 - ink[box])[..., None], 3, axis=2)

    def answer(image: np.ndarray) -> str:
        out = engine(image, use_det=False, use_cls=False, use_rec=True)
        txts = out.txts or ("",)
        return txts[0][:1]

    for ink in inks[:_WARMUP]:
        answer(rgb(ink))
    times, top1, misses = [], 0, []
    for ink, label in zip(inks, labels, strict=True):
        image = rgb(ink)
        start = time.perf_counter()
        got = answer(image)
        times.append(time.perf_counter() - start)
        top1 += got == label
        if got != label:
            misses.append(label + (got or "∅"))
    rec = engine.cfg.Rec
    return {
        "name": PPOCR,
        "version": f"rapidocr {version('rapidocr')}, {rec.ocr_version} rec {rec.model_type}",
        "input": "ink crop" if crop else "whole canvas",
        "n": len(labels),
        "top1": top1 / len(labels),
        "top10": None,
        **_latency(times),
        "misses": misses,
    }


def _zinnia_lib():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("zinnia") or "libzinnia.so.0"
    lib = ctypes.CDLL(name)
    p, c = ctypes.c_void_p, ctypes.c_size_t
    for fn, args, res in (
        ("zinnia_recognizer_new", [], p),
        ("zinnia_recognizer_open", [p, ctypes.c_char_p], ctypes.c_int),
        ("zinnia_recognizer_strerror", [p], ctypes.c_char_p),
        ("zinnia_recognizer_classify", [p, p, c], p),
        ("zinnia_character_new", [], p),
        ("zinnia_character_clear", [p], None),
        ("zinnia_character_set_width", [p, c], None),
        ("zinnia_character_set_height", [p, c], None),
        ("zinnia_character_add", [p, c, ctypes.c_int, ctypes.c_int], ctypes.c_int),
        ("zinnia_result_size", [p], c),
        ("zinnia_result_value", [p, c], ctypes.c_char_p),
        ("zinnia_result_destroy", [p], None),
    ):
        getattr(lib, fn).argtypes, getattr(lib, fn).restype = args, res
    return lib


def _fit_box(strokes: list[np.ndarray], side: int, fill: float = 0.8) -> list[np.ndarray]:
    # the points' bounding box scaled (aspect kept) to `fill` of the canvas and centred
    points = np.concatenate(strokes)
    lo, hi = points.min(axis=0), points.max(axis=0)
    scale = fill * side / max(int((hi - lo).max()), 1)
    offset = (side - (hi - lo) * scale) / 2
    return [np.rint((s - lo) * scale + offset).astype(np.int32) for s in strokes]


def run_zinnia(
    strokes: list[list[np.ndarray]], labels: list[str], side: int, model: Path, fit: bool
) -> dict:
    """zinnia (SVM over stroke features) on the drawings' mouse points.

    zinnia's features are positions relative to the canvas (`set_width` / `set_height`), not to
    the ink, so `fit=False` (as a canvas app calls it) penalises small or off-centre drawings;
    `fit=True` first moves the points' bounding box to fill 80% of the canvas, centred.
    """
    try:
        lib = _zinnia_lib()
    except OSError as e:
        return {
            "skipped": f"libzinnia not found ({e}); apt-get install libzinnia0 "
            "tegaki-zinnia-simplified-chinese"
        }
    if not model.is_file():
        return {"skipped": f"{model} missing; apt-get install tegaki-zinnia-simplified-chinese"}
    recognizer = lib.zinnia_recognizer_new()
    if not lib.zinnia_recognizer_open(recognizer, str(model).encode()):
        return {"skipped": f"{model}: {lib.zinnia_recognizer_strerror(recognizer).decode()}"}
    character = lib.zinnia_character_new()

    def top10(char_strokes: list[np.ndarray]) -> list[str]:
        lib.zinnia_character_clear(character)
        lib.zinnia_character_set_width(character, side)
        lib.zinnia_character_set_height(character, side)
        for i, s in enumerate(char_strokes):
            for x, y in s.tolist():
                lib.zinnia_character_add(character, i, x, y)
        result = lib.zinnia_recognizer_classify(recognizer, character, 10)
        if not result:
            return []
        out = [
            lib.zinnia_result_value(result, j).decode()
            for j in range(lib.zinnia_result_size(result))
        ]
        lib.zinnia_result_destroy(result)
        return out

    for s in strokes[:_WARMUP]:
        top10(_fit_box(s, side) if fit else s)
    times, top1, hits10 = [], 0, 0
    for s, label in zip(strokes, labels, strict=True):
        start = time.perf_counter()
        chars = top10(_fit_box(s, side) if fit else s)
        times.append(time.perf_counter() - start)
        top1 += chars[:1] == [label]
        hits10 += label in chars
    return {
        "name": "zinnia (Tegaki zh_CN)",
        "version": f"{model.name}",
        "input": "mouse points fitted to 80% box" if fit else "mouse points (canvas)",
        "n": len(labels),
        "top1": top1 / len(labels),
        "top10": hits10 / len(labels),
        **_latency(times),
    }


def _save_drawn(path: Path, chars: list[str], inks: np.ndarray, strokes: list) -> None:
    lengths = [len(s) for char_strokes in strokes for s in char_strokes]
    np.savez_compressed(
        path,
        chars=np.array(chars),
        inks=inks,
        points=np.concatenate([s for char_strokes in strokes for s in char_strokes]),
        stroke_lengths=np.array(lengths),
        char_strokes=np.array([len(s) for s in strokes]),
    )


def _load_drawn(path: Path) -> tuple[list[str], np.ndarray, list[list[np.ndarray]]]:
    with np.load(path) as z:
        chars, inks = z["chars"].tolist(), z["inks"]
        points = np.split(z["points"], np.cumsum(z["stroke_lengths"])[:-1])
        firsts = np.concatenate([[0], np.cumsum(z["char_strokes"])])
    return chars, inks, [points[a:b] for a, b in zip(firsts[:-1], firsts[1:], strict=True)]


def peer_worker(args: argparse.Namespace) -> int:
    """`--peer-worker DRAWN.npz`: scores the peers on saved drawings, JSON to --json."""
    chars, inks, strokes = _load_drawn(args.peer_worker)
    out = {}
    if "rapidocr" in args.peers:
        out["rapidocr"] = run_rapidocr(inks, chars, crop=args.rapidocr_input == "crop")
    if "zinnia" in args.peers:
        for mode in args.zinnia_input:
            key = "zinnia" if mode == "canvas" else f"zinnia-{mode}"
            out[key] = run_zinnia(strokes, chars, inks.shape[1], args.zinnia_model, mode == "box")
    args.json.write_text(json.dumps(out))
    return 0


def run_peers(
    args: argparse.Namespace, chars: list[str], inks: np.ndarray, strokes: list, work: Path
) -> dict:
    """The peers in a subprocess of --peer-python, one thread each."""
    if not args.peers:
        return {}
    drawn, result = work / "drawn.npz", work / "peers.json"
    _save_drawn(drawn, chars, inks, strokes)
    cmd = [
        args.peer_python,
        str(Path(__file__).resolve()),
        "--peer-worker",
        str(drawn),
        "--json",
        str(result),
        "--peers",
        *args.peers,
        "--rapidocr-input",
        args.rapidocr_input,
        "--zinnia-model",
        str(args.zinnia_model),
        "--zinnia-input",
        *args.zinnia_input,
    ]
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    try:
        proc = subprocess.run(cmd, env={**os.environ, **threads}, capture_output=True, text=True)
    except OSError as e:
        return {
            p: {"skipped": f"cannot run --peer-python {args.peer_python}: {e}"} for p in args.peers
        }
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {p: {"skipped": f"{args.peer_python} failed: {reason}"} for p in args.peers}
    return json.loads(result.read_text())


# ----- report ---------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU's model name (bench/light_recognize.py prints it too)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def print_table(rows: list[dict], ppocr_ms: float | None) -> None:
    print("| model | input | n | top-1 | top-10 | ms/char | PP-OCRv6 ms / this ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = "—" if ppocr_ms is None else f"{ppocr_ms / r['ms_per_char']:.1f}x"
        print(
            f"| {r['name']} | {r['input']} | {r['n']} | {_pct(r['top1'])} | {_pct(r['top10'])} "
            f"| {r['ms_per_char']:.2f} | {ratio} |"
        )


def get_parser(
    canvas_side: int | None = None, brush_radius: float | None = None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="bundles (folders or names in models/; default: every bundle in models/)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="draw N classes, a subsample fixed by --subsample-seed (default: all)",
    )
    parser.add_argument("--subsample-seed", type=int, default=0)
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"drawing seed (default {DEFAULT_SEED}; training used 1 and 2)",
    )
    parser.add_argument(
        "--background",
        choices=("transparent", "white"),
        default="transparent",
        help="RGBA on transparent (the demo's drawing) or RGB black on white",
    )
    parser.add_argument("--canvas", type=int, default=canvas_side, help="canvas side in px")
    parser.add_argument("--brush-radius", type=float, default=brush_radius, help="in px")
    parser.add_argument(
        "--backend", default="auto", help="recogniser backend (auto|onnx|torch|torchscript)"
    )
    parser.add_argument(
        "--peers",
        nargs="*",
        choices=PEERS,
        default=list(PEERS),
        help="peers to run (`--peers` alone: none)",
    )
    parser.add_argument(
        "--peer-python",
        default=sys.executable,
        help="interpreter with rapidocr installed (default: this one)",
    )
    parser.add_argument("--rapidocr-input", choices=("crop", "canvas"), default="crop")
    parser.add_argument("--zinnia-model", type=Path, default=ZINNIA_MODEL)
    parser.add_argument(
        "--zinnia-input",
        nargs="+",
        choices=("canvas", "box"),
        default=["canvas", "box"],
        help="zinnia rows: points as drawn on the canvas, and/or fitted to a centred box",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument(
        "--save-images",
        type=Path,
        default=None,
        metavar="DIR",
        help="save the first --num-images drawings (and what the model sees)",
    )
    parser.add_argument("--num-images", type=int, default=16)
    parser.add_argument("--peer-worker", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def _save_images(folder: Path, chars: list[str], images: list[np.ndarray], model: Path) -> None:
    from PIL import Image

    from hccr.recognizer import Recognizer

    rec = Recognizer.from_bundle(model, backend="torch")
    folder.mkdir(parents=True, exist_ok=True)
    for i, (ch, image) in enumerate(zip(chars, images, strict=False)):
        stem = f"{i:03d}-U+{ord(ch):04X}"
        Image.fromarray(image).save(folder / f"{stem}.png")
        Image.fromarray(rec.prepare(image)).save(folder / f"{stem}-model-input.png")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--peer-worker" in argv:  # the peer subprocess: no hccr, no gradio
        return peer_worker(get_parser().parse_args(argv))
    import torch

    from data_tools.strokes import load_medians
    from demo.app import BRUSH_RADIUS, CANVAS_SIDE  # the demo's sheet and brush
    from hccr.bundle import MODELS_DIR, is_bundle, resolve_model
    from hccr.charset import Charset

    args = get_parser(CANVAS_SIDE, BRUSH_RADIUS).parse_args(argv)
    torch.set_num_threads(1)
    models = (
        [resolve_model(m) for m in args.models]
        if args.models
        else sorted(p for p in MODELS_DIR.iterdir() if is_bundle(p))
    )
    if not models:
        raise SystemExit(f"no bundle in {MODELS_DIR}; pass --models PATH")
    gb1 = Charset.gb1()
    medians = load_medians()
    class_ids = [k for k, ch in enumerate(gb1.chars) if ch in medians]
    drawable = len(class_ids)
    if args.limit is not None and args.limit < len(class_ids):
        pick = np.random.default_rng(args.subsample_seed).choice(
            len(class_ids), args.limit, replace=False
        )
        class_ids = [class_ids[i] for i in sorted(pick)]
    chars = [gb1.chars[k] for k in class_ids]
    start = time.perf_counter()
    inks, strokes = draw_set(chars, class_ids, args.seed, args.canvas, args.brush_radius)
    print(
        f"drawn: {len(chars)} classes ({drawable} of the {len(gb1)} GB2312 level-1 classes have "
        f"medians), seed {args.seed}, {args.canvas}x{args.canvas} canvas, brush radius "
        f"{args.brush_radius:g} px, {args.background} background, "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if args.save_images is not None:
        images = [canvas_image(ink, args.background) for ink in inks[: args.num_images]]
        _save_images(args.save_images, chars, images, models[0])
        print(f"saved {min(args.num_images, len(chars))} drawings to {args.save_images}")

    rows = []
    for path in models:
        r = score_bundle(path, inks, chars, args.background, args.backend)
        r["name"] = f"{r['name']} ({r['backend']})"
        r["input"] = "canvas image"
        rows.append(r)
    with tempfile.TemporaryDirectory(prefix="hccr-drawn-") as tmp:
        peers = run_peers(args, chars, inks, strokes, Path(tmp))
    for name, r in peers.items():
        if "skipped" in r:
            print(f"{name}: skipped: {r['skipped']}")
        else:
            rows.append(r)
    ppocr = peers.get("rapidocr", {})
    ppocr_ms = ppocr.get("ms_per_char")
    print(f"batch 1, 1 thread; {os.cpu_count()} CPUs ({cpu_name()})")
    print_table(rows, ppocr_ms)
    if ppocr_ms is not None:
        for r in rows[: len(models)]:
            ok = r["top1"] >= ppocr["top1"] and ppocr_ms / r["ms_per_char"] >= 20
            print(
                f"goal (top-1 >= PP-OCRv6's {_pct(ppocr['top1'])} at >= 20x less latency), "
                f"{r['name']}: {'met' if ok else 'not met'}"
            )
    if args.json is not None:
        settings = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("json", "peer_worker")
        }
        args.json.write_text(
            json.dumps(
                {
                    "settings": settings,
                    "classes": len(chars),
                    "models": rows[: len(models)],
                    "peers": peers,
                    "cpus": os.cpu_count(),
                    "cpu": cpu_name(),
                },
                ensure_ascii=False,
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
