"""Fits how a real writer departs from the stroke medians -> data_tools/writer_stats.json.

    python -m data_tools.fit_writer_stats ../shared/data/olhwdb1.0-writer001.pot \\
        -o data_tools/writer_stats.json

Only the characters of the first half of GB2312 level-1 order (classes 0-1,876, FIT_CLASSES)
are read, so the writer's second half stays a test set. Each real character is aligned to the
Make Me a Hanzi medians of the same character:

1. both are put in one frame (the real ink's bounding box moved and scaled onto the medians');
2. a monotone dynamic-programming alignment matches each real stroke to a run of 1-4
   consecutive median strokes (a cursive join: one pen-down trace over several strokes) or two
   real strokes to one median (a broken stroke); cost: mean distance between the polylines
   resampled by arc length. Characters whose best alignment is still far (REJECT_COST) are
   left out (another form of the character, or strokes in another order);
3. an affine map from the medians to the real strokes over all matched pairs gives the
   character's slant (of verticals), rise (of horizontals) and aspect; it is undone and the
   strokes aligned again (step 2);
4. with that map undone, each one-to-one stroke gives its start and end cuts (where the real
   stroke begins and ends along the median), rotation, length change, shift and bowing, and the
   radical's strokes (`radStrokes`) against the rest give the components' relative scale and
   offset;
5. consecutive median strokes that one real stroke covers are joins, counted against the gap
   (L1, unit box) between the first's end and the second's start; characters with as many real
   strokes as medians whose best one-to-one assignment is not the writing order count as
   stroke-order changes.

Every distribution is stored as quantiles (QUANTILES), which `data_tools.writer_stats`
samples by inverse CDF. Statistics only: no image or stroke of the writer is stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from data_tools.strokes import load_medians
from hccr.casia import iter_pot
from hccr.charset import Charset

FIT_CLASSES = 1877  # GB2312 level-1 classes 0-1,876: the fit half; 1,877-3,754 stay a test
QUANTILES = np.linspace(0.0, 1.0, 21)
CLIP = (0.01, 0.99)  # the quantile range stored as 0 and 1: tablet glitches are not a style
GAP_EDGES = (0.0, 0.1, 0.2, 0.3, 0.45, 0.7, 2.0)  # L1 gap bins (unit box) of the join rates
K = 24  # points per resampled polyline
REJECT_COST = 0.12  # mean point distance (unit box) above which a character is not used
_MAX_RUN = 4
MIN_CHORD = 0.15  # median strokes shorter than this (unit box) give no angle, length or bow


def resample(points: np.ndarray, k: int = K) -> np.ndarray:
    """(N, 2) polyline -> (k, 2) points evenly spaced along its length."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    if arc[-1] <= 0:
        return np.repeat(points[:1], k, axis=0)
    u = np.linspace(0.0, arc[-1], k)
    return np.stack([np.interp(u, arc, points[:, 0]), np.interp(u, arc, points[:, 1])], 1)


def to_median_frame(real: list[np.ndarray], medians: list[np.ndarray]) -> list[np.ndarray]:
    """Real strokes (tablet units) moved and scaled so that their bounding box has the medians'
    centre and longer side."""
    rp, mp = np.concatenate(real).astype(np.float64), np.concatenate(medians)
    r_lo, r_hi, m_lo, m_hi = rp.min(0), rp.max(0), mp.min(0), mp.max(0)
    scale = (m_hi - m_lo).max() / max((r_hi - r_lo).max(), 1e-9)
    return [((s - (r_lo + r_hi) / 2) * scale + (m_lo + m_hi) / 2) for s in real]


def _cost(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(a - b).T).mean())


def align(real: list[np.ndarray], medians: list[np.ndarray]) -> tuple[float, list[tuple]]:
    """Monotone alignment -> (mean cost per median stroke, [(real ids, median ids), ...])."""
    r, n = len(real), len(medians)
    inf = float("inf")
    best = np.full((r + 1, n + 1), inf)
    back: dict[tuple[int, int], tuple[int, int]] = {}
    best[0, 0] = 0.0
    rs = [resample(s) for s in real]
    runs = {(b, k): resample(np.concatenate(medians[b : b + k]))
            for b in range(n) for k in range(1, _MAX_RUN + 1) if b + k <= n}  # fmt: skip
    for a in range(r + 1):
        for b in range(n + 1):
            if best[a, b] == inf:
                continue
            moves = [(1, k) for k in range(1, _MAX_RUN + 1)] + [(2, 1)]
            for da, db in moves:
                if a + da > r or b + db > n:
                    continue
                if da == 1:
                    c = _cost(rs[a], runs[(b, db)])
                else:
                    c = _cost(resample(np.concatenate(real[a : a + 2])), runs[(b, 1)])
                total = best[a, b] + c * db
                if total < best[a + da, b + db]:
                    best[a + da, b + db] = total
                    back[(a + da, b + db)] = (a, b)
    if best[r, n] == inf:
        return inf, []
    pairs, at = [], (r, n)
    while at != (0, 0):
        prev = back[at]
        pairs.append((tuple(range(prev[0], at[0])), tuple(range(prev[1], at[1]))))
        at = prev
    return float(best[r, n] / n), pairs[::-1]


def decompose(m: np.ndarray) -> dict[str, float]:
    """A 2x2 map (column vectors, scale removed) as the generator's [[aspect, slant], [-rise,
    1/aspect]]: what it does to horizontals (rise), to verticals (slant) and to the aspect.
    A rotation is the same rise and slant at once, so it needs no parameter of its own."""
    m = m / np.sqrt(abs(np.linalg.det(m)))
    c0, c1 = np.hypot(*m[:, 0]), np.hypot(*m[:, 1])
    aspect = np.sqrt(c0 / c1)
    return {
        "log_aspect": float(np.log(aspect)),
        "rise": float(-aspect * m[1, 0] / m[0, 0]),  # horizontals rising to the right: > 0
        "slant": float(np.tan(np.arctan2(m[0, 1], m[1, 1])) / aspect),  # verticals leaning right
    }


def _affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # least-squares (centre of src, centre of dst, 2x2 m) with dst - dc ~ (src - sc) @ m
    sc, dc = src.mean(0), dst.mean(0)
    m, *_ = np.linalg.lstsq(src - sc, dst - dc, rcond=None)
    return sc, dc, m


def _project(point: np.ndarray, line: np.ndarray) -> float:
    # arc position (0 start, 1 end; beyond on the end segments' extensions) of the point
    seg = np.diff(line, axis=0)
    lens = np.hypot(*seg.T)
    arc = np.concatenate([[0.0], np.cumsum(lens)])
    total = max(arc[-1], 1e-9)
    best, best_t = np.inf, 0.0
    for i, (p0, d, ln) in enumerate(zip(line[:-1], seg, lens, strict=True)):
        if ln <= 0:
            continue
        u = float(np.dot(point - p0, d) / ln**2)
        lo = -np.inf if i == 0 else 0.0
        hi = np.inf if i == len(seg) - 1 else 1.0
        u = min(max(u, lo), hi)
        dist = np.hypot(*(p0 + u * d - point))
        if dist < best:
            best, best_t = dist, (arc[i] + u * ln) / total
    return best_t


def _bow(points: np.ndarray) -> float:
    # signed deviation of the middle of a stroke from its chord, over the chord's length
    chord = points[-1] - points[0]
    length = max(np.hypot(*chord), 1e-9)
    normal = np.array([-chord[1], chord[0]]) / length
    mid = points[len(points) // 2] - points[0]
    return float(np.dot(mid, normal) / length)


def stroke_stats(real: np.ndarray, median: np.ndarray) -> dict[str, float]:
    """One matched stroke pair (real already in the median frame, global map undone)."""
    r, m = resample(real), resample(median)
    rc, mc = r[-1] - r[0], m[-1] - m[0]
    mlen = max(np.hypot(*mc), 1e-9)
    out = {
        "start_cut": _project(r[0], m),
        "end_cut": 1.0 - _project(r[-1], m),
        "angle": float(np.arctan2(*rc[::-1]) - np.arctan2(*mc[::-1]) + np.pi) % (2 * np.pi) - np.pi,
        "log_length": float(np.log(max(np.hypot(*rc), 1e-9) / mlen)),
        "shift_x": float(r.mean(0)[0] - m.mean(0)[0]),
        "shift_y": float(r.mean(0)[1] - m.mean(0)[1]),
        "bow": _bow(r) - _bow(m),
    }
    if mlen < MIN_CHORD:  # a dot's direction, length and bend are noise, not a habit
        for k in ("angle", "log_length", "bow"):
            del out[k]
    return out


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    # scale and shift (no rotation) taking src's points onto dst's: (log scale, shift)
    sc, dc = src.mean(0), dst.mean(0)
    s = np.sqrt(((dst - dc) ** 2).sum() / max(((src - sc) ** 2).sum(), 1e-12))
    return float(np.log(max(s, 1e-9))), dc - sc


def fit_character(real: list[np.ndarray], medians: list[np.ndarray], radical) -> dict | None:
    real = to_median_frame(real, medians)
    cost, pairs = align(real, medians)
    if not pairs:
        return None  # more real strokes than the alignment can place
    # the character's own slant and aspect blur the stroke matching: undo the affine map of a
    # first alignment (over every matched pair), then align again
    src = np.concatenate([resample(np.concatenate([medians[k] for k in b])) for _, b in pairs])
    dst = np.concatenate([resample(np.concatenate([real[k] for k in a])) for a, _ in pairs])
    sc, dc, m = _affine(src, dst)
    if abs(np.linalg.det(m)) > 1e-3:
        real = [(s - dc) @ np.linalg.inv(m) + sc for s in real]
        cost, pairs = align(real, medians)
        out_char = decompose(m.T)
    else:
        return None
    if cost > REJECT_COST:
        return None
    ones = [(a[0], b[0]) for a, b in pairs if len(a) == 1 and len(b) == 1]
    out: dict = {"cost": cost, "strokes": [], "joins": [], "radical": None}
    # joins: consecutive medians (i, i+1) and whether one real stroke covered both
    covered = {b[k] for a, b in pairs if len(a) == 1 for k in range(len(b) - 1)}
    for i in range(len(medians) - 1):
        gap = float(np.abs(medians[i + 1][0] - medians[i][-1]).sum())
        out["joins"].append((gap, i in covered))
    out["char"] = out_char
    back = real  # the global map is undone already
    out["strokes"] = [stroke_stats(back[a], medians[b]) for a, b in ones]
    if radical is not None:
        rad = [(a, b) for a, b in ones if radical[b]]
        rest = [(a, b) for a, b in ones if not radical[b]]
        if len(rad) >= 1 and len(rest) >= 1:
            fits = []
            for group in (rad, rest):
                s = np.concatenate([resample(medians[b]) for _, b in group])
                d = np.concatenate([resample(back[a]) for a, _ in group])
                fits.append(_similarity(s, d))
            (ls_r, sh_r), (ls_o, sh_o) = fits
            out["radical"] = {
                "log_scale": ls_r - ls_o,
                "shift_x": float(sh_r[0] - sh_o[0]),
                "shift_y": float(sh_r[1] - sh_o[1]),
            }
    if len(real) == len(medians):
        from scipy.optimize import linear_sum_assignment

        c = np.array([[_cost(resample(r), resample(md)) for md in medians] for r in real])
        rows, cols = linear_sum_assignment(c)
        out["reordered"] = bool((cols != rows).any() and c[rows, cols].sum() < 0.7 * np.trace(c))
    return out


def _quantiles(values: list[float]) -> list[float]:
    v = np.asarray(values, np.float64)
    lo, hi = np.quantile(v, CLIP)
    q = np.quantile(np.clip(v, lo, hi), QUANTILES)
    return [round(float(x), 5) for x in q]


def fit(pot: Path, classes: int = FIT_CLASSES) -> dict:
    """Reads `pot`, aligns its characters of the first `classes` GB1 classes, -> the stats."""
    gb1 = Charset.gb1()
    allowed = set(gb1.chars[:classes])
    medians = load_medians()
    per_stroke: dict[str, list[float]] = {}
    per_char: dict[str, list[float]] = {}
    per_radical: dict[str, list[float]] = {}
    joins, seen, used, reordered, equal = [], 0, 0, 0, 0
    for rec in iter_pot(pot):
        if rec.char not in allowed or rec.char not in medians:
            continue
        seen += 1
        r = fit_character(rec.strokes, medians.get(rec.char), medians.radicals(rec.char))
        if r is None:
            continue
        used += 1
        joins += r["joins"]
        for s in r["strokes"]:
            for k, v in s.items():
                per_stroke.setdefault(k, []).append(v)
        for k, v in r.get("char", {}).items():
            per_char.setdefault(k, []).append(v)
        for k, v in (r["radical"] or {}).items():
            per_radical.setdefault(k, []).append(v)
        if "reordered" in r:
            equal += 1
            reordered += r["reordered"]
    if not used:
        raise ValueError(f"{pot}: no character of GB1 classes 0-{classes - 1} could be aligned")
    gaps = np.array([g for g, _ in joins])
    joined = np.array([j for _, j in joins])
    bins = np.digitize(gaps, GAP_EDGES[1:-1])
    rates = [float(joined[bins == i].mean()) if (bins == i).any() else 0.0
             for i in range(len(GAP_EDGES) - 1)]  # fmt: skip
    return {
        "source": f"{pot.name}: one online writer, GB2312 level-1 classes 0-{classes - 1} only",
        "method": "python -m data_tools.fit_writer_stats POT -o data_tools/writer_stats.json",
        "characters": {"read": seen, "aligned": used, "reject_cost": REJECT_COST},
        "quantiles": [round(float(q), 3) for q in QUANTILES],
        "stroke": {k: _quantiles(v) for k, v in sorted(per_stroke.items())},
        "char": {k: _quantiles(v) for k, v in sorted(per_char.items())},
        "radical": {k: _quantiles(v) for k, v in sorted(per_radical.items())},
        "join": {
            "gap_edges": list(GAP_EDGES),
            "rate": [round(r, 4) for r in rates],
            "pairs": [int((bins == i).sum()) for i in range(len(GAP_EDGES) - 1)],
        },
        "order": {
            "characters": equal,
            "reordered": reordered,
            "rate": round(reordered / max(equal, 1), 4),
        },
        "counts": {
            "strokes": len(per_stroke.get("shift_x", [])),
            "radicals": len(per_radical.get("log_scale", [])),
        },  # fmt: skip
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pot", type=Path, help="a CASIA OLHWDB .pot file (one writer)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .json")
    parser.add_argument("--classes", type=int, default=FIT_CLASSES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stats = fit(args.pot, args.classes)
    tmp = args.output.with_name(args.output.name + ".partial")
    tmp.write_text(json.dumps(stats, indent=1) + "\n")
    tmp.replace(args.output)
    c = stats["characters"]
    print(
        f"{args.output}: {c['aligned']} of {c['read']} characters aligned, "
        f"{stats['counts']['strokes']} strokes, join rates by gap {stats['join']['rate']}, "
        f"order changes {stats['order']['rate']:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
