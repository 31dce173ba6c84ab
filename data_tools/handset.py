"""The hand-set stroke variation the fitted one replaced: the ablation's baseline only.

`hccr-data synth --features` without `cursive` draws the `strokes` style with this function
instead of `styles.perturb_strokes`, so that an ablation can train on the generator as it was
before the writer statistics (data_tools/writer_stats.json) and measure what they buy. Its
constants were set by hand, not fitted; nothing else uses it.
"""

from __future__ import annotations

import numpy as np

from data_tools.styles import StrokeTemplate, _smooth, join_strokes, place_strokes


def perturb_strokes(
    template: StrokeTemplate, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hand-set writer-like variation of a character's medians -> (strokes, pen-width factors).

    Works on all strokes at once (vectorised over points): shortening, per-stroke affine
    jitter and bowing, component misplacement, pen pressure, corner rounding, cursive joins,
    then slant/rotation/aspect and an elastic bend of the whole character.
    """
    n = len(template.starts) - 1
    sid, t = template.stroke, template.t
    # all random numbers in three draws: per-stroke normals/uniforms and per-character ones
    zn = rng.standard_normal((8, n))
    un = rng.random((6, n))
    g = rng.standard_normal(12)
    gu = rng.random(8)
    cursive = gu[0] ** 0.7  # one knob for this "writer": joins, rounding, shortening
    # per-stroke parameters, gathered to the points in one indexing operation
    ang, scale = zn[0] * 0.06, np.exp(zn[1] * 0.08)
    per = np.stack(
        [
            un[0] * (0.10 * cursive + 0.02),  # 0: start cut (writers start late...)
            1 - un[1] * (0.16 * cursive + 0.03),  # 1: end cut (...and stop early)
            np.cos(ang) * scale,  # 2, 3: rotation and length change about the stroke centre
            np.sin(ang) * scale,
            zn[2] * 0.018,  # 4, 5: shift
            zn[3] * 0.018,
            zn[4] * 0.06,  # 6: bowing, sideways, most in the stroke's middle
            un[2] * 0.3,  # 7: extra pressure at the start
            un[3] * 0.4,  # 8: taper at the end
            np.exp(zn[5] * 0.12),  # 9: pen pressure of the stroke
        ],
        axis=1,
    )[sid]  # (M, 10)
    keep, p = place_strokes(template, per, t)
    # component misplacement: strokes after a split point (often the next component, as
    # components are written one after another) move and scale together
    if n >= 3 and gu[1] < 0.6:
        moved = sid >= 1 + int(gu[2] * (n - 1))
        p[moved] = (p[moved] - 0.5) * np.exp(g[0] * 0.07) + 0.5 + g[1:3] * 0.035
    # pressure: heavier at the start, tapering at the end, with a slow swing
    w = (1.0 + per[:, 7] * (1 - t) - per[:, 8] * t * t) * per[:, 9]
    w = np.clip(w + 0.1 * np.sin(2 * np.pi * (0.5 + gu[3]) * t), 0.5, 1.3)
    p = _smooth(p, template.starts, int(1 + 2.5 * cursive))
    # global: slant (shear), horizontals rising to the right (most writers' habit), rotation,
    # aspect, then an elastic bend of the whole character
    shear, rise = g[3] * 0.12, 0.07 + g[10] * 0.06
    ang, aspect = g[4] * 0.04, np.exp(g[5] * 0.1)
    a = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) @ np.array(
        [[aspect, shear], [-rise, 1.0 / aspect]]
    )
    p = (p - 0.5) @ a.T + 0.5
    freq = g[6:10].reshape(2, 2) * 1.6  # two plane waves, one per axis
    p += (gu[4] * 0.03) * np.sin(2 * np.pi * (p @ freq.T) + gu[5:7] * 2 * np.pi)
    # split back into strokes, joining some into cursive ligatures when the pen would not lift
    return join_strokes(
        p, w, sid, keep, lambda gap: (un[4, 1:] < 0.8 * cursive) & (gap < 0.5), un[5]
    )
