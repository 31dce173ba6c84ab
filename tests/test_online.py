"""The online (trajectory) recogniser end to end, on real files made here: trajectory LMDBs from
a `.pot` file and from the generator, an online model started from an image bundle, its
bundle, export, Python API and `hccr recognize`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_bundle import TINY_CHARS, char_strokes, jitter_strokes

from data_tools.cli import main as data_main
from hccr.bundle import load_bundle
from hccr.casia import write_gnt, write_pot
from hccr.cli import main as hccr_main
from hccr.dataset import LmdbDataset
from hccr.nets import create_model, expand_input_channels
from hccr.recognizer import Recognizer
from hccr.trajectory import EmptyDrawingError

pytestmark = pytest.mark.usefixtures("one_thread")
# one short epoch on one thread, no progress bar: every training run in this file
FAST_RUN = ["--epochs", "1", "--batch-size", "16", "--workers", "0", "--no-progress",
            "--threads", "1"]  # fmt: skip


def pot_samples(chars: str, seed: int = 0) -> list[tuple[str, list[np.ndarray]]]:
    """Tablet-like integer strokes of `chars`, jittered as a hand would."""
    rng = np.random.default_rng(seed)
    return [
        (
            ch,
            [
                np.round(s * 1000 + 300).astype(np.int32)
                for s in jitter_strokes(char_strokes(ch), rng)
            ],
        )
        for ch in chars
    ]


def test_pack_pot_as_trajectories(tmp_path, capsys):
    pot = tmp_path / "001.pot"
    write_pot(pot, pot_samples(TINY_CHARS))
    out = tmp_path / "online.lmdb"
    args = ["pack", str(pot), "-o", str(out), "--input", "strokes", "--charset", "seen"]
    assert data_main([*args, "--workers", "1", "--no-progress", "--size", "32"]) == 0
    ds = LmdbDataset(out)
    assert ds.input_kind == "strokes" and ds.channels == 9 and len(ds) == len(TINY_CHARS)
    maps, label = ds[0]
    assert maps.shape == (9, 32, 32) and maps.dtype == torch.uint8 and maps[0].max() == 255
    assert ds.meta["trajectory"]["size"] == 32 and ds.meta["writers"] == [1]
    batch = ds.__getitems__([0, 1, 2])
    assert torch.equal(batch[0][0], maps)
    capsys.readouterr()
    assert data_main(["info", str(out)]) == 0
    assert "input        strokes" in capsys.readouterr().out
    gnt = tmp_path / "x.gnt"
    write_gnt(gnt, [("一", np.full((20, 20), 255, np.uint8))])
    bad = ["pack", str(gnt), "-o", str(tmp_path / "bad.lmdb"), "--input", "strokes"]
    assert data_main([*bad, "--charset", "seen", "--no-progress"]) != 0
    assert "needs .pot" in capsys.readouterr().err
    assert not (tmp_path / "bad.lmdb").exists()


def synth(out, *extra: str) -> int:
    chars = out.parent / "chars.txt"
    chars.write_text("\n".join(TINY_CHARS) + "\n", encoding="utf-8")
    args = ["synth", "-o", str(out), "--chars", str(chars), "--per-char", "6", "--size", "32"]
    return data_main([*args, "--workers", "1", "--no-progress", *extra])


def test_synth_trajectories_strokes_style_only(tmp_path, capsys):
    assert synth(tmp_path / "s.lmdb", "--input", "strokes") != 0
    assert "only the strokes style" in capsys.readouterr().err
    assert synth(tmp_path / "s.lmdb", "--input", "strokes", "--styles", "strokes", "--pen-up") == 0
    ds = LmdbDataset(tmp_path / "s.lmdb")
    assert ds.channels == 10 and len(ds) == 60
    points, label, _ = ds.read_points(7)
    assert label == 1 and all(p.shape[1] == 2 for p in points)
    maps, _, _ = ds.read(7)
    assert maps.shape == (10, 32, 32) and maps[1:9].max() > 0


def test_expanded_model_answers_as_the_image_model_at_step_0():
    image = create_model("student_lw_fast", num_classes=7, channels=[8, 16, 16, 32],
                         depths=[1, 1, 1, 1], feat_dim=16, stem="stride2").eval()  # fmt: skip
    online = expand_input_channels(image, 9).eval()
    assert online.kwargs["in_chans"] == 9 and image.kwargs["in_chans"] == 1
    x = torch.rand(4, 9, 64, 64)
    with torch.no_grad():
        assert torch.equal(online(x), image(x[:, :1]))  # whatever the direction channels hold
    with pytest.raises(ValueError, match="1-channel"):
        expand_input_channels(online, 10)
    dw_first = create_model("student_lw", num_classes=7, blocks="dw", channels=[8, 8, 8, 8],
                            depths=[1, 1, 1, 1], feat_dim=8)  # fmt: skip
    with pytest.raises(ValueError, match="cannot widen"):
        expand_input_channels(dw_first, 9)


def test_train_online_from_the_image_bundle(tiny_bundle_path, tmp_path, capsys):
    assert synth(tmp_path / "train.lmdb", "--input", "strokes", "--styles", "strokes") == 0
    assert (
        synth(tmp_path / "val.lmdb", "--input", "strokes", "--styles", "strokes", "--split", "val")
        == 0
    )
    data = ["--data", str(tmp_path / "train.lmdb"), "--val", str(tmp_path / "val.lmdb")]
    # without --in-chans the image bundle does not read trajectories: a one-line error
    assert (
        hccr_main(
            ["train", "--init", str(tiny_bundle_path), *data, *FAST_RUN, "-o", str(tmp_path / "r0")]
        )
        != 0
    )
    assert "--in-chans 9" in capsys.readouterr().err
    run = tmp_path / "run"
    code = hccr_main(["train", "--init", str(tiny_bundle_path), "--in-chans", "9", *data, *FAST_RUN,
                      "--lr", "0.001", "-o", str(run)])  # fmt: skip
    assert code == 0
    meta = json.loads((run / "bundle.json").read_text())
    assert meta["input"] == "strokes" and meta["kwargs"]["in_chans"] == 9
    assert meta["trajectory"]["size"] == 32
    assert meta["train_config"]["init_in_chans"] == 9
    # started from the image model: the ink channel already carries most of the answer
    assert meta["metrics"]["top1"] >= 0.5
    capsys.readouterr()
    assert hccr_main(["eval", str(run), "--data", str(tmp_path / "val.lmdb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 60
    assert hccr_main(["eval", str(tiny_bundle_path), "--data", str(tmp_path / "val.lmdb")]) != 0
    assert "holds trajectories" in capsys.readouterr().err


def test_online_bundle_api(tiny_online_bundle_path, tiny_recognizer):
    bundle = load_bundle(tiny_online_bundle_path)
    assert bundle.input_kind == "strokes" and bundle.trajectory.channels == 9
    rec = Recognizer.from_bundle(tiny_online_bundle_path)
    assert rec.backend == "onnx" and rec.input_kind == "strokes"
    assert tiny_recognizer.input_kind == "image"
    correct_online = correct_image = 0
    for ch, strokes in pot_samples(TINY_CHARS, seed=3):
        points = [[(int(x), int(y)) for x, y in s] for s in strokes]
        online = rec.recognize_strokes(points, topk=10)
        assert len(online) == 10 and online[0].prob >= online[-1].prob
        correct_online += online[0].char == ch
        correct_image += tiny_recognizer.recognize_strokes(points, topk=1)[0].char == ch
    assert correct_online >= 8 and correct_image >= 8
    with pytest.raises(ValueError, match="online model") as info:
        rec.recognize(np.zeros((40, 40), np.uint8))
    assert "\n" not in str(info.value)
    with pytest.raises(EmptyDrawingError):
        rec.recognize_strokes([[], []])
    torch_rec = Recognizer.from_bundle(tiny_online_bundle_path, backend="torch")
    maps = rec.prepare_strokes(pot_samples("水")[0][1])[None]
    assert np.allclose(rec._logits(maps), torch_rec._logits(maps), atol=1e-3)


def test_recognize_cli_reads_pot_with_an_online_bundle(tiny_online_bundle_path, tmp_path, capsys):
    pot = tmp_path / "001.pot"
    write_pot(pot, pot_samples(TINY_CHARS, seed=5))
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(image)
    code = hccr_main(["recognize", str(pot), str(image), "--model", str(tiny_online_bundle_path),
                      "--format", "jsonl", "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert len(rows) == len(TINY_CHARS) and rows[0]["source"] == str(pot)
    assert sum(r["label"] == r["top"][0]["char"] for r in rows) >= 8
    assert code == 1 and f"{image}: an image; the online model reads pen strokes" in captured.err


def _image_teacher(like: Path, out: Path) -> Path:
    """An image teacher_cnn bundle with `like`'s classes and preprocessing, costing more FLOPs
    than the widened student (distill refuses a teacher no bigger than its student)."""
    from hccr.bundle import save_bundle

    ref = load_bundle(like)
    kwargs = {"channels": [32, 64, 64, 64], "depths": [1, 1, 1, 1], "feat_dim": 64}
    torch.manual_seed(0)
    model = create_model("teacher_cnn", num_classes=len(ref.charset), **kwargs)
    return save_bundle(out, model, "teacher_cnn", kwargs, ref.charset, ref.norm)


@pytest.mark.parametrize("mode", ["logit", "feature"])
def test_distill_online_student_from_an_image_teacher(tiny_bundle_path, tmp_path, mode):
    """The image teacher sees the ink channel; the student is the image bundle widened."""
    assert synth(tmp_path / "train.lmdb", "--input", "strokes", "--styles", "strokes") == 0
    data = ["--data", str(tmp_path / "train.lmdb"), "--val", str(tmp_path / "train.lmdb")]
    run = tmp_path / f"kd-{mode}"
    teacher = _image_teacher(tiny_bundle_path, tmp_path / "teacher")
    code = hccr_main(["distill", "--teacher", str(teacher), "--kd-mode", mode,
                      "--init", str(tiny_bundle_path), "--in-chans", "9", *data, *FAST_RUN,
                      "--lr", "0.001", "-o", str(run)])  # fmt: skip
    assert code == 0
    bundle = load_bundle(run)
    assert bundle.input_kind == "strokes" and bundle.kwargs["in_chans"] == 9
    assert bundle.metrics["top1"] >= 0.5


def test_train_from_scratch_takes_the_datas_channels(tmp_path):
    from tiny_lmdb import TINY_STUDENT

    assert synth(tmp_path / "t.lmdb", "--input", "strokes", "--styles", "strokes", "--pen-up") == 0
    data = ["--data", str(tmp_path / "t.lmdb"), "--val", str(tmp_path / "t.lmdb")]
    assert hccr_main(["train", *TINY_STUDENT, *data, *FAST_RUN, "-o", str(tmp_path / "run")]) == 0
    bundle = load_bundle(tmp_path / "run")
    assert bundle.kwargs["in_chans"] == 10 and bundle.trajectory.pen_up
    assert (
        hccr_main(
            [
                "train",
                *TINY_STUDENT,
                *data,
                *FAST_RUN,
                "--in-chans",
                "9",
                "-o",
                str(tmp_path / "r2"),
            ]
        )
        != 0
    )


def test_adapt_an_online_bundle_from_a_trajectory_lmdb(tiny_online_bundle_path, tmp_path, capsys):
    """`hccr adapt` draws a trajectory LMDB as the online model's maps; the profile applies in
    `hccr recognize`; an image LMDB for an online model is one line naming it, nothing written."""
    points, images = tmp_path / "points.lmdb", tmp_path / "images.lmdb"
    assert synth(points, "--input", "strokes", "--styles", "strokes") == 0
    assert synth(images, "--styles", "strokes") == 0
    model = str(tiny_online_bundle_path)
    profile = tmp_path / "me.profile"
    assert hccr_main(["adapt", model, "--data", str(points), "-o", str(profile),
                      "--prior", "5", "--no-progress"]) == 0  # fmt: skip
    assert profile.is_file()
    capsys.readouterr()
    assert hccr_main(["recognize", str(points), "--model", model, "--profile", str(profile),
                      "--format", "jsonl", "--no-progress"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 60 and sum(r["label"] == r["top"][0]["char"] for r in rows) >= 45
    other = tmp_path / "other.profile"
    assert (
        hccr_main(["adapt", model, "--data", str(images), "-o", str(other), "--no-progress"]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{images}: holds images; this model reads pen strokes" in err
    assert not other.exists()
