"""Checks that a `--teacher` can teach the student of an `hccr distill` run, made before the run
starts (nothing read at length, nothing written into RUN_DIR):

  check_teacher_fits  the teacher's charset and preprocessing are those of the training LMDB
                      and of the student's --init bundle (bundle.json only, no weights)
  check_is_teacher    the teacher costs more FLOPs than the student and is not the student's
                      own architecture at the same size

Each failure is one TeacherError line that names the teacher's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from hccr.bundle import BundleInfo
from hccr.charset import Charset
from hccr.preprocess import NormConfig


class TeacherError(ValueError):
    """A --teacher that cannot teach this run; the message is one line naming its folder."""


def charset_difference(a: Charset, b: Charset) -> str | None:
    """None when equal, else a short reason: class counts, or the first class that differs."""
    if a == b:
        return None
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} classes"
    i = next(i for i, (x, y) in enumerate(zip(a.chars, b.chars, strict=True)) if x != y)
    return f"class {i} is {a.chars[i]!r} vs {b.chars[i]!r}"


def norm_difference(a: NormConfig, b: NormConfig) -> str | None:
    """None when equal, else the settings that differ (`size 64 vs 32; method ...`)."""
    if a == b:
        return None
    da, db = a.to_dict(), b.to_dict()
    return "; ".join(f"{k} {da[k]!r} vs {db[k]!r}" for k in da if da[k] != db.get(k))


def check_teacher_fits(
    teacher: BundleInfo,
    data_path: str | Path,
    data_charset: Charset,
    data_norm: NormConfig,
    init: BundleInfo | None = None,
) -> None:
    """Raises TeacherError unless the teacher reads the same classes and images as the run.

    Compared with the training LMDB (`data_*`) and, when the student starts from an --init
    bundle, with that bundle: a teacher that scores other classes, or sees its input at another
    size or normalisation, would teach the student something other than the data says.
    """
    others = [(f"--data {data_path}", data_charset, data_norm)]
    if init is not None:
        others.append((f"the student's --init {init.path}", init.charset, init.norm))
    charset_diffs = [
        f"{what} ({d})" for what, c, _ in others if (d := charset_difference(teacher.charset, c))
    ]
    if charset_diffs:
        raise TeacherError(
            f"teacher {teacher.path}: charset differs from " + " and from ".join(charset_diffs)
        )
    norm_diffs = [
        f"{what} ({d})" for what, _, n in others if (d := norm_difference(teacher.norm, n))
    ]
    if norm_diffs:
        raise TeacherError(
            f"teacher {teacher.path}: preprocessing differs from "
            + " and from ".join(norm_diffs)
            + "; a teacher must see the student's input"
        )


def check_is_teacher(
    teacher_path: str | Path,
    teacher: nn.Module,
    student: nn.Module,
    image_size: int,
) -> dict[str, Any]:
    """Raises TeacherError for a teacher no bigger than the student; returns both FLOP counts.

    Knowledge distillation moves what a larger network learnt into a smaller one: a teacher with
    fewer FLOPs than the student, or the student's own architecture at the same size, has no
    capacity to give (Hinton et al. 2015 distil an ensemble or a wider net into a small one).
    """
    from hccr.profiling import count_flops

    teacher_flops = count_flops(teacher, image_size)["flops"]
    student_flops = count_flops(student, image_size)["flops"]
    t_arch, s_arch = getattr(teacher, "arch", "?"), getattr(student, "arch", "?")
    if t_arch == s_arch and _kwargs_key(teacher) == _kwargs_key(student):
        raise TeacherError(
            f"teacher {teacher_path}: not a teacher: the same network as the student "
            f"({s_arch}, same size); distil from a larger model"
        )
    if teacher_flops < student_flops:
        raise TeacherError(
            f"teacher {teacher_path}: not a teacher: {t_arch} costs {_mflops(teacher_flops)} "
            f"MFLOPs, fewer than the student's {_mflops(student_flops)} ({s_arch}); "
            "distil from a larger model"
        )
    return {"teacher_flops": teacher_flops, "student_flops": student_flops}


def _kwargs_key(model: nn.Module) -> str:
    # JSON text, so that a bundle's lists and a fresh model's tuples compare equal
    return json.dumps(getattr(model, "kwargs", None), sort_keys=True, default=str)


def _mflops(flops: int) -> str:
    return f"{flops / 1e6:.3g}"
