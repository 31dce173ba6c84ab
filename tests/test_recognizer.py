"""Recognizer: the same answer however a character image arrives; exports; thread safety."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_bundle import TINY_CHARS, char_strokes

from data_tools.render import render_strokes
from hccr.bundle import BundleError
from hccr.preprocess import EmptyImageError
from hccr.recognizer import Candidate, Recognizer


def _clean(ch: str) -> np.ndarray:
    """The reference rendering: ink bright on black, medium pen, centred."""
    return render_strokes(char_strokes(ch), pen_width=0.05, canvas=128)


def _on_white(ink: np.ndarray) -> np.ndarray:
    return 255 - ink


def _variants(ch: str) -> dict[str, Image.Image | np.ndarray]:
    """The character rendered the ways users and files deliver it."""
    thin = render_strokes(char_strokes(ch), pen_width=0.02, canvas=400)  # a mouse on a canvas
    thick = render_strokes(char_strokes(ch), pen_width=0.14, canvas=128)  # a brush
    ink = _clean(ch)
    rgba = np.zeros((*ink.shape, 4), np.uint8)  # black ink, alpha = ink, transparent elsewhere
    rgba[..., 3] = ink
    off = np.full((300, 500), 255, np.uint8)  # small character in a corner, lots of margin
    off[10:74, 420:484] = _on_white(np.asarray(Image.fromarray(ink).resize((64, 64))))
    coloured = np.stack([_on_white(ink)] * 3, axis=-1)
    coloured[..., 2] = np.maximum(coloured[..., 2], 60)  # dark blue ink on white
    big = Image.fromarray(_on_white(ink)).resize((2000, 2000), Image.BILINEAR)
    return {
        "thin": _on_white(thin),
        "thick": _on_white(thick),
        "inverted": ink,  # light on dark
        "rgba_transparent": Image.fromarray(rgba, "RGBA"),
        "off_centre": off,
        "tiny": Image.fromarray(_on_white(ink)).resize((20, 20), Image.BILINEAR),
        "huge": big,
        "rgb": Image.fromarray(coloured, "RGB"),
        "palette": Image.fromarray(_on_white(ink)).convert("P"),
    }


@pytest.mark.parametrize("ch", TINY_CHARS)
def test_same_top1_however_the_character_is_rendered(tiny_recognizer: Recognizer, ch: str) -> None:
    reference = tiny_recognizer.recognize(_clean(ch), topk=3)[0][0].char
    assert reference == ch
    variants = _variants(ch)
    results = tiny_recognizer.recognize(list(variants.values()), topk=3)
    got = {name: top[0].char for name, top in zip(variants, results, strict=True)}
    assert got == dict.fromkeys(variants, reference)


def test_single_image_and_batch_agree(tiny_recognizer: Recognizer) -> None:
    images = [_clean(ch) for ch in TINY_CHARS]
    batch = tiny_recognizer.recognize(images, topk=5)
    singles = [tiny_recognizer.recognize(im, topk=5)[0] for im in images]
    assert [[c.char for c in r] for r in batch] == [[c.char for c in r] for r in singles]
    for row_b, row_s in zip(batch, singles, strict=True):
        np.testing.assert_allclose([c.prob for c in row_b], [c.prob for c in row_s], atol=1e-5)


def test_candidates_are_ranked_probabilities(tiny_recognizer: Recognizer) -> None:
    top = tiny_recognizer.recognize(_clean("山"), topk=50)[0]
    assert len(top) == len(TINY_CHARS)  # topk larger than the charset is clamped
    assert all(isinstance(c, Candidate) and isinstance(c.prob, float) for c in top)
    probs = [c.prob for c in top]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert {c.char for c in top} == set(TINY_CHARS)


def test_empty_image_raises_empty_image_error(tiny_recognizer: Recognizer) -> None:
    with pytest.raises(EmptyImageError):
        tiny_recognizer.recognize(np.full((100, 100), 255, np.uint8))
    transparent = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # an untouched canvas
    with pytest.raises(EmptyImageError):
        tiny_recognizer.recognize(transparent)
    assert tiny_recognizer.recognize([]) == []


def test_prepare_gives_the_model_input_size(tiny_recognizer: Recognizer) -> None:
    prepared = tiny_recognizer.prepare(_on_white(_clean("水")))
    S = tiny_recognizer.image_size
    assert prepared.shape == (S, S) and prepared.dtype == np.uint8
    assert prepared.max() == 255 and prepared[0, 0] == 0  # ink bright, background 0


def test_concurrent_threads_get_the_same_answers(tiny_recognizer: Recognizer) -> None:
    images = [_clean(ch) for ch in TINY_CHARS]
    expected = [r[0].char for r in tiny_recognizer.recognize(images)]
    errors: list[BaseException] = []
    answers: list[list[str]] = []

    def worker() -> None:
        try:
            for _ in range(5):
                answers.append([r[0].char for r in tiny_recognizer.recognize(images)])
        except BaseException as e:  # surfaced in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert answers == [expected] * 30


def test_missing_bundle_is_a_one_line_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no-such-model"):
        Recognizer.from_bundle(tmp_path / "no-such-model")


def test_forced_backend_without_export_is_an_error(tiny_bundle_path: Path) -> None:
    with pytest.raises(BundleError, match="model.onnx"):
        Recognizer.from_bundle(tiny_bundle_path, backend="onnx")


def _copy_bundle(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_torchscript_export_is_used_and_agrees(tiny_bundle_path: Path, tmp_path: Path) -> None:
    folder = _copy_bundle(tiny_bundle_path, tmp_path / "b")
    float_rec = Recognizer.from_bundle(folder, backend="torch")
    S = float_rec.image_size
    torch.jit.trace(float_rec.model, torch.zeros(1, 1, S, S)).save(str(folder / "model.ts.pt"))
    rec = Recognizer.from_bundle(folder)
    assert rec.backend == "torchscript"
    images = [_clean(ch) for ch in TINY_CHARS]
    assert [r[0].char for r in rec.recognize(images)] == list(TINY_CHARS)


def test_onnx_export_is_used_and_agrees(tiny_bundle_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    folder = _copy_bundle(tiny_bundle_path, tmp_path / "b")
    float_rec = Recognizer.from_bundle(folder, backend="torch")
    S = float_rec.image_size
    torch.onnx.export(float_rec.model, (torch.zeros(1, 1, S, S),), str(folder / "model.onnx"),
                      input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)  # fmt: skip
    rec = Recognizer.from_bundle(folder)
    assert rec.backend == "onnx"
    images = [_clean(ch) for ch in TINY_CHARS]
    got = rec.recognize(images)
    want = float_rec.recognize(images)
    assert [r[0].char for r in got] == list(TINY_CHARS)
    np.testing.assert_allclose([r[0].prob for r in got], [r[0].prob for r in want], atol=1e-4)


def test_stale_export_is_ignored(tiny_bundle_path: Path, tmp_path: Path) -> None:
    import os

    folder = _copy_bundle(tiny_bundle_path, tmp_path / "b")
    (folder / "model.ts.pt").write_bytes(b"not torchscript")
    weights = folder / "weights.pt"
    os.utime(folder / "model.ts.pt", (weights.stat().st_mtime - 100,) * 2)
    with pytest.warns(UserWarning, match="stale"):
        rec = Recognizer.from_bundle(folder)
    assert rec.backend == "torch"


def test_broken_export_falls_back_with_a_warning(tiny_bundle_path: Path, tmp_path: Path) -> None:
    folder = _copy_bundle(tiny_bundle_path, tmp_path / "b")
    (folder / "model.ts.pt").write_bytes(b"not torchscript")
    with pytest.warns(UserWarning, match="model.ts.pt"):
        rec = Recognizer.from_bundle(folder)
    assert rec.backend == "torch"
    with pytest.raises(BundleError, match="model.ts.pt"):
        Recognizer.from_bundle(folder, backend="torchscript")


def test_export_replaced_after_its_check_is_not_used(
    tiny_bundle_path: Path, tmp_path: Path
) -> None:
    """The record holds the export's own SHA-256: another export copied over model.onnx (same
    weights.pt, so the weights hash still matches) warns and runs the float model."""
    import shutil

    pytest.importorskip("onnxruntime")
    from hccr.cli import main as cli_main

    folder = _copy_bundle(tiny_bundle_path, tmp_path / "b")
    assert cli_main(["export", str(folder)]) == 0
    assert Recognizer.from_bundle(folder).backend == "onnx"

    other = _copy_bundle(tiny_bundle_path, tmp_path / "other")
    weights = other / "weights.pt"
    state = torch.load(weights, weights_only=True)
    torch.save({k: v.flip(0) if v.ndim else v for k, v in state.items()}, weights)
    assert cli_main(["export", str(other)]) == 0
    shutil.copy(other / "model.onnx", folder / "model.onnx")
    with pytest.warns(UserWarning, match="SHA-256 differs.*using the float model"):
        rec = Recognizer.from_bundle(folder)
    assert rec.backend == "torch"
    images = [_clean(ch) for ch in TINY_CHARS]
    assert [r[0].char for r in rec.recognize(images)] == list(TINY_CHARS)
    with pytest.raises(BundleError, match="replaced after export"):
        Recognizer.from_bundle(folder, backend="onnx")


def test_export_record_decides_staleness_not_file_times(
    tiny_bundle_path: Path, tmp_path: Path
) -> None:
    """After a `git clone` an export can be older than weights.pt on disk: its record decides."""
    import os

    from hccr.cli import main as cli_main

    folder = _copy_bundle(tiny_bundle_path, tmp_path / "b")
    assert cli_main(["export", str(folder), "-o", str(folder / "model.ts.pt")]) == 0
    assert (folder / "model.ts.pt.json").is_file()
    weights = folder / "weights.pt"
    os.utime(folder / "model.ts.pt", (weights.stat().st_mtime - 100,) * 2)
    assert Recognizer.from_bundle(folder).backend == "torchscript"

    torch.save({k: v + 1 for k, v in torch.load(weights, weights_only=True).items()}, weights)
    with pytest.warns(UserWarning, match="stale"):
        rec = Recognizer.from_bundle(folder)
    assert rec.backend == "torch"
