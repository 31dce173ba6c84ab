"""A teacher bundle in models/ (as `hccr export RUN --bundle models/gb1-teacher --half-weights`
makes it) is offered by the demo's model picker and serves recognition and writer adaptation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_demo import sheet_strokes
from test_demo_adapt import MIN_PICKS, writer_strokes
from tiny_bundle import TINY_CHARS, TINY_NORM

from demo.app import RecognizerPool, build_demo, load_for_demo
from demo.panel import panel_html
from demo.writer import MAX_PROFILE_BYTES, PageWriters, writer_functions
from hccr.bundle import load_bundle, save_bundle
from hccr.charset import Charset
from hccr.cli import main
from hccr.nets import create_model

# teacher-shaped: the teacher architecture with its 1024-d feature layer, narrow convolutions
TEACHER_KWARGS = {"channels": [8, 16, 16, 32], "depths": [1, 1, 1, 1], "feat_dim": 1024}


@pytest.fixture(scope="module")
def models_dir(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ with the tiny student as gb1-student and a teacher exported as the lead ships it."""
    root = tmp_path_factory.mktemp("demo-teacher")
    models = root / "models"
    models.mkdir()
    shutil.copytree(tiny_bundle_path, models / "gb1-student")
    teacher = create_model("teacher_cnn", num_classes=len(TINY_CHARS), **TEACHER_KWARGS)
    run = save_bundle(root / "run", teacher, "teacher_cnn", TEACHER_KWARGS,
                      Charset(TINY_CHARS, name="tiny10"), TINY_NORM)  # fmt: skip
    out = models / "gb1-teacher"
    assert main(["export", str(run), "--bundle", str(out), "--half-weights"]) == 0
    assert (out / "model.onnx").is_file()
    return models


@pytest.fixture
def demo_models(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import hccr.bundle

    monkeypatch.setattr(hccr.bundle, "MODELS_DIR", models_dir)
    return models_dir


def test_picker_offers_the_teacher_and_it_answers(demo_models: Path) -> None:
    from demo.recognition import recognize_strokes, reply

    rec, others, warning = load_for_demo(None)
    assert warning is None and rec.name == "gb1-student"  # the student stays the default
    assert list(others) == ["gb1-teacher"]
    assert '<option value="gb1-teacher">' in panel_html([rec.name, *others])
    assert "gb1-teacher" in str(build_demo(rec, bundles=others).get_config_file())
    teacher = RecognizerPool(rec, others).get("gb1-teacher")
    assert teacher.name == "gb1-teacher" and load_bundle(demo_models / "gb1-teacher").arch == (
        "teacher_cnn"
    )
    out = reply(recognize_strokes(teacher, sheet_strokes("山"), None), teacher)
    assert out["model"] == "gb1-teacher"
    assert sorted(c["char"] for c in out["candidates"]) == sorted(TINY_CHARS)


def test_teacher_adapts_and_its_larger_profile_uploads_again(demo_models: Path) -> None:
    rec, others, _ = load_for_demo(None)
    functions = {
        f.__name__: f for f in writer_functions(PageWriters(), RecognizerPool(rec, others).get)
    }
    page = {"session": "page-one-0001", "model": "gb1-teacher"}
    for k in range(MIN_PICKS):
        ch = TINY_CHARS[k % len(TINY_CHARS)]
        out = functions["pick"]({**page, "char": ch, "strokes": writer_strokes(ch, k)})
    assert out["adapt"]["adapted"], out
    download = functions["profile_download"](page)
    # a 1024-d map: beyond the 1 MB that a 128-d student's profile (66 kB) never approaches
    assert len(download["data"]) * 3 // 4 > MAX_PROFILE_BYTES
    other = {"session": "page-two-0002", "model": "gb1-teacher"}
    out = functions["profile_upload"]({**other, "name": download["name"], "data": download["data"]})
    assert "error" not in out and out["adapt"]["adapted"], out
    student = {**other, "model": "gb1-student"}  # made for other weights: refused, one line
    out = functions["profile_upload"]({**student, "name": "t.profile", "data": download["data"]})
    assert "error" in out and "\n" not in out["error"]
