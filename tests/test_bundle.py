"""Bundles: save -> load gives the same logits; every kind of broken bundle is a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import hccr.bundle as bundle_mod
from hccr.bundle import (
    BundleError,
    bundle_input_kind,
    default_model,
    load_bundle,
    resolve_model,
    save_bundle,
)
from hccr.charset import Charset
from hccr.nets import create_model, model_kwargs
from hccr.preprocess import NormConfig

KWARGS = {"channels": [4, 8, 8, 8], "depths": [1, 1, 1, 1], "feat_dim": 16, "dropout": 0.0}
CHARSET = Charset("一二三四五", name="tiny5")
NORM = NormConfig(size=32)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("student_lw", num_classes=len(CHARSET), **KWARGS)
    for m in model.modules():  # non-default BN stats, so a lost buffer would change the logits
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _save(path: Path, **more) -> tuple[Path, torch.nn.Module]:
    model = _model()
    out = save_bundle(
        path,
        model,
        "student_lw",
        model_kwargs(model),
        CHARSET,
        NORM,
        metrics={"top1": 0.5},
        train_config={"command": "hccr train ..."},
        **more,
    )
    return out, model


def test_save_load_same_logits(tmp_path: Path) -> None:
    path, model = _save(tmp_path / "b")
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md",
        "bundle.json",
        "charset.txt",
        "weights.pt",
    ]
    loaded = load_bundle(path)
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    assert loaded.arch == "student_lw" and loaded.charset == CHARSET
    assert loaded.norm == NORM and loaded.image_size == 32 and loaded.num_classes == 5
    assert loaded.kwargs["channels"] == KWARGS["channels"]
    assert loaded.metrics == {"top1": 0.5}
    assert not loaded.model.training
    card = (path / "README.md").read_text()
    assert "hccr train ..." in card and "top1" in card
    # the weights file is a plain state_dict (weights_only loading works)
    state = torch.load(path / "weights.pt", weights_only=True)
    assert set(state) == set(model.state_dict())


def test_save_into_existing_run_folder_keeps_other_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    _save(run)
    assert (run / "metrics.jsonl").read_text() == "{}\n"
    assert load_bundle(run).num_classes == 5


def test_interrupted_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_mod, "model_card", boom)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_kwargs_num_classes_must_match_charset(tmp_path: Path) -> None:
    model = _model()
    kwargs = {**model_kwargs(model), "num_classes": 7}
    with pytest.raises(BundleError, match="num_classes=7"):
        save_bundle(tmp_path / "b", model, "student_lw", kwargs, CHARSET, NORM)


def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_missing_charset_is_one_line_error(tmp_path: Path) -> None:
    path, _ = _save(tmp_path / "b")
    (path / "charset.txt").unlink()
    with pytest.raises(BundleError) as e:
        load_bundle(path)
    assert "charset" in _one_line(e) and str(path) in _one_line(e)


def test_weights_of_other_widths_is_one_line_error(tmp_path: Path) -> None:
    path, _ = _save(tmp_path / "b")
    meta = json.loads((path / "bundle.json").read_text())
    meta["kwargs"]["channels"] = [4, 8, 8, 16]
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError) as e:
        load_bundle(path)
    assert "do not fit" in _one_line(e)


def test_unknown_arch_and_bad_json(tmp_path: Path) -> None:
    path, _ = _save(tmp_path / "b")
    meta = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**meta, "arch": "nope"}))
    with pytest.raises(BundleError, match="unknown architecture 'nope'; known: .*student_lw"):
        load_bundle(path)
    (path / "bundle.json").write_text("{")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(path)


def test_charset_length_mismatch(tmp_path: Path) -> None:
    path, _ = _save(tmp_path / "b")
    (path / "charset.txt").write_text("一\n二\n")
    with pytest.raises(BundleError, match="charset has 2 characters"):
        load_bundle(path)


def test_resolve_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setattr(bundle_mod, "MODELS_DIR", models)
    with pytest.raises(BundleError, match="no model bundle"):
        resolve_model(None)
    _save(models / "b-other")
    assert resolve_model(None) == models / "b-other"  # no gb1-student: the first bundle
    _save(models / "gb1-student")
    assert resolve_model(None) == models / "gb1-student"
    assert resolve_model("b-other") == models / "b-other"
    assert resolve_model(str(models / "b-other")) == models / "b-other"
    assert resolve_model(str(models / "b-other" / "bundle.json")) == models / "b-other"
    with pytest.raises(BundleError, match="known: b-other, gb1-student"):
        resolve_model("missing")
    not_yet = tmp_path / "run"
    not_yet.mkdir()
    (not_yet / "config.json").write_text("{}")
    with pytest.raises(BundleError, match="bundle.json missing"):
        resolve_model(str(not_yet))


def test_default_model_per_input_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images default to gb1-student, pen strokes to gb1-online; each falls back to a bundle of
    its kind, strokes then to the image default."""
    from hccr.trajectory import TrajectoryConfig

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setattr(bundle_mod, "MODELS_DIR", models)
    with pytest.raises(BundleError, match="no model bundle"):
        default_model("strokes")
    _save(models / "gb1-student")
    assert default_model("strokes") == default_model("image") == models / "gb1-student"
    online = TrajectoryConfig(size=NORM.size)
    _save(models / "a-online", trajectory=online)  # sorts before gb1-student
    assert bundle_input_kind(models / "a-online") == "strokes"
    assert default_model("strokes") == models / "a-online"  # the only online bundle
    assert default_model("image") == resolve_model(None) == models / "gb1-student"
    _save(models / "gb1-online", trajectory=online)
    assert default_model("strokes") == models / "gb1-online"
    assert resolve_model(None) == models / "gb1-student"  # `hccr recognize` reads images
    shutil.rmtree(models / "gb1-student")
    _save(models / "b-image")
    assert default_model("image") == models / "b-image"  # the first image bundle, not a-online
    (models / "gb1-online" / "bundle.json").write_text("{")  # broken: not a default
    assert default_model("strokes") == models / "a-online"
    with pytest.raises(ValueError, match="input_kind"):
        default_model("pictures")
