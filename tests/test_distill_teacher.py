"""`hccr distill` refuses a --teacher that cannot teach the run: one line naming the teacher,
before any training starts and before anything is written into RUN_DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_lmdb import FAST, TINY_STUDENT, make_tiny_lmdb

from hccr.bundle import save_bundle
from hccr.charset import Charset
from hccr.cli import main
from hccr.nets import create_model
from hccr.preprocess import NormConfig

STUDENT_ARCH = TINY_STUDENT[1]
STUDENT_KWARGS = json.loads(TINY_STUDENT[3])
TEACHER_KWARGS = {"channels": [8, 8, 16, 16], "depths": [1, 1, 1, 1], "feat_dim": 32}


def _bundle(
    out: Path,
    arch: str = "teacher_cnn",
    kwargs: dict | None = None,
    num_classes: int = 5,
    first: int = 0x4E00,
    norm: NormConfig | None = None,
) -> Path:
    """An untrained bundle: these checks read its description and size, never its answers."""
    kwargs = dict(TEACHER_KWARGS if kwargs is None else kwargs)
    model = create_model(arch, num_classes=num_classes, **kwargs)
    charset = Charset([chr(first + i) for i in range(num_classes)], name="tiny")
    return save_bundle(out, model, arch, kwargs, charset, norm or NormConfig(size=32))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_lmdb(tmp_path_factory.mktemp("teacher-check") / "train.lmdb", per_class=4)


def _distill(
    teacher: Path, data: Path, out: Path, capsys: pytest.CaptureFixture, *more: str
) -> str:
    """Runs `hccr distill`, asserts it failed with one line and wrote nothing; returns the line."""
    args = ["distill", "--teacher", str(teacher), "--data", str(data), "--val", str(data)]
    args += [*more, *FAST, "--epochs", "1", "-o", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(teacher) in err, err
    assert not out.exists()
    return err


@pytest.mark.parametrize("mode", ["logit", "feature"])
def test_teacher_with_other_charset_is_refused(
    mode: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    teacher = _bundle(tmp_path / "t6", num_classes=6)
    err = _distill(teacher, data, tmp_path / "s", capsys, *TINY_STUDENT, "--kd-mode", mode)
    assert "charset differs from --data" in err and "6 vs 5 classes" in err


def test_teacher_with_same_count_other_characters_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    teacher = _bundle(tmp_path / "t", first=0x4E01)  # 丁 ... instead of 一 ...
    err = _distill(teacher, data, tmp_path / "s", capsys, *TINY_STUDENT)
    assert "charset differs" in err and "class 0 is '丁' vs '一'" in err


@pytest.mark.parametrize(
    ("norm", "diff"),
    [(NormConfig(size=40), "size 40 vs 32"), (NormConfig(size=32, method="linear"), "method")],
)
def test_teacher_with_other_preprocessing_is_refused(
    norm: NormConfig, diff: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    teacher = _bundle(tmp_path / "t", norm=norm)
    err = _distill(teacher, data, tmp_path / "s", capsys, *TINY_STUDENT)
    assert "preprocessing differs from --data" in err and diff in err


def test_teacher_that_differs_from_the_init_bundle_names_both(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_tiny_lmdb(tmp_path / "d.lmdb", per_class=4, method="linear")
    init = _bundle(tmp_path / "init", STUDENT_ARCH, STUDENT_KWARGS, norm=NormConfig(32, "linear"))
    teacher = _bundle(tmp_path / "t")  # moment normalisation
    err = _distill(teacher, data, tmp_path / "s", capsys, "--init", str(init))
    assert f"--data {data} (method 'moment' vs 'linear')" in err
    assert f"--init {init} (method 'moment' vs 'linear')" in err


def test_teacher_smaller_than_the_student_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    small = {"channels": [2, 4, 4, 4], "depths": [1, 1, 1, 1], "feat_dim": 8}
    teacher = _bundle(tmp_path / "t", STUDENT_ARCH, small)
    err = _distill(teacher, data, tmp_path / "s", capsys, *TINY_STUDENT)
    assert "not a teacher" in err and "fewer than the student's" in err


def test_teacher_that_is_the_student_itself_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    init = _bundle(tmp_path / "init", STUDENT_ARCH, STUDENT_KWARGS)
    err = _distill(init, data, tmp_path / "s", capsys, "--init", str(init))
    assert "not a teacher" in err and "same network as the student" in err
