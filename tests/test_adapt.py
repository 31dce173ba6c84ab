"""Writer adaptation (hccr/adapt.py, `hccr adapt`, `--profile`): fixtures made here, no real data."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_bundle import TINY_CHARS, TINY_NORM, char_strokes, jitter_strokes, render_sample

from data_tools.render import render_strokes
from hccr.adapt import Adapter, ProfileError, WriterProfile, fit_stm
from hccr.cli import main as hccr
from hccr.preprocess import normalize, to_model_input
from hccr.recognizer import Recognizer

# One writer's fixed style: a strong shear, a slight turn, a flattened box and a fine pen,
# which the tiny model (trained on +-8 degrees, +-0.15 shear) gets ~60% right.
STYLE_SHEAR, STYLE_ANGLE, STYLE_PEN, STYLE_SQUASH = 0.9, 10.0, 0.1, 0.8


def styled(ch: str, rng: np.random.Generator) -> np.ndarray:
    """A sample of `ch` in the writer's style: a normalised (S, S) uint8 ink map."""
    a = np.deg2rad(STYLE_ANGLE)
    rotate = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    matrix = rotate @ np.array([[1.0, STYLE_SHEAR], [0.0, STYLE_SQUASH]])
    strokes = [((s - 0.5) @ matrix.T + 0.5).astype(np.float32)
               for s in jitter_strokes(char_strokes(ch), rng)]  # fmt: skip
    return normalize(render_strokes(strokes, pen_width=STYLE_PEN, canvas=96), TINY_NORM)


def writer_samples(per_char: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    labels = [ch for ch in TINY_CHARS for _ in range(per_char)]
    return np.stack([styled(ch, rng) for ch in labels]), labels


def top1(rec: Recognizer, images: np.ndarray, labels: list[str], profile=None) -> float:
    got = [r[0].char for r in rec.recognize_prepared(images, 1, profile)]
    return float(np.mean([g == y for g, y in zip(got, labels, strict=True)]))


@pytest.fixture(scope="module")
def writer() -> dict:
    adapt_x, adapt_y = writer_samples(per_char=6, seed=1)
    test_x, test_y = writer_samples(per_char=12, seed=2)
    return {"adapt": (adapt_x, adapt_y), "test": (test_x, test_y)}


@pytest.fixture(scope="module")
def profile(tiny_recognizer: Recognizer, writer: dict) -> WriterProfile:
    adapter = Adapter(tiny_recognizer)
    adapter.add(*writer["adapt"])
    return adapter.fit()


def test_fit_stm_recovers_a_known_affine_map() -> None:
    rng = np.random.default_rng(0)
    A0 = np.eye(8) + 0.3 * rng.normal(size=(8, 8))
    b0 = rng.normal(size=8)
    S = rng.normal(size=(400, 8)) + 2.0
    A, b = fit_stm(S, S @ A0.T + b0, prior=1e-6)
    np.testing.assert_allclose(A, A0, atol=1e-4)
    np.testing.assert_allclose(b, b0, atol=1e-4)
    # a strong prior keeps the map near the identity
    A_reg, _ = fit_stm(S, S @ A0.T + b0, prior=1e6)
    np.testing.assert_allclose(A_reg, np.eye(8), atol=0.02)


def test_adaptation_reduces_error_on_a_writer_with_a_fixed_style(
    tiny_recognizer: Recognizer, writer: dict, profile: WriterProfile
) -> None:
    before = top1(tiny_recognizer, *writer["test"])
    after = top1(tiny_recognizer, *writer["test"], profile=profile)
    assert before < 0.8  # the style really is hard for the model, or the test proves nothing
    assert after >= before + 0.15
    assert profile.mode == "supervised" and profile.num_samples == 60
    # the recogniser itself is unchanged unless the profile is set for every call
    assert tiny_recognizer.profile is None
    assert top1(tiny_recognizer, *writer["test"]) == before


def test_unsupervised_adaptation_weights_the_model_answers(
    tiny_recognizer: Recognizer, writer: dict
) -> None:
    adapter = Adapter(tiny_recognizer)
    kept = adapter.add_unlabelled(writer["adapt"][0])
    profile = adapter.fit()
    assert kept == profile.num_samples == 60 and profile.mode == "unsupervised"
    assert profile.A.shape == (tiny_recognizer.feat_dim, tiny_recognizer.feat_dim)


def test_profile_round_trips_and_applies_from_bundle(
    tiny_bundle_path: Path, writer: dict, profile: WriterProfile, tmp_path: Path
) -> None:
    path = profile.save(tmp_path / "me.profile")
    assert [p.name for p in tmp_path.iterdir()] == ["me.profile"]  # no temporary left behind
    loaded = WriterProfile.load(path)
    np.testing.assert_array_equal(loaded.A, profile.A)
    assert loaded.weights_sha256 == profile.weights_sha256
    rec = Recognizer.from_bundle(tiny_bundle_path, profile=path)
    assert top1(rec, *writer["test"]) == top1(rec, *writer["test"], profile=profile)
    rec.set_profile(None)
    assert top1(rec, *writer["test"]) < top1(rec, *writer["test"], profile=profile)


def _other_weights(bundle: Path, dst: Path) -> Path:
    shutil.copytree(bundle, dst)
    state = torch.load(dst / "weights.pt", weights_only=True)
    state["classifier.bias"] = state["classifier.bias"] + 0.01
    torch.save(state, dst / "weights.pt")
    return dst


def test_profile_for_other_weights_is_refused(
    tiny_bundle_path: Path, profile: WriterProfile, writer: dict, tmp_path: Path, capsys
) -> None:
    path = profile.save(tmp_path / "me.profile")
    other = _other_weights(tiny_bundle_path, tmp_path / "other")
    with pytest.raises(ProfileError, match=f"{path}: made for other weights"):
        Recognizer.from_bundle(other, profile=path)
    rec = Recognizer.from_bundle(other)
    with pytest.raises(ProfileError, match="other weights"):
        rec.recognize_prepared(writer["test"][0][:2], 1, profile=WriterProfile.load(path))
    image = tmp_path / "a.png"
    Image.fromarray(255 - writer["test"][0][0]).save(image)
    assert hccr(["recognize", str(image), "--model", str(other), "--profile", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "other weights" in err[0]


def test_profile_for_another_charset_is_refused(
    tiny_bundle_path: Path, profile: WriterProfile, tmp_path: Path
) -> None:
    folder = shutil.copytree(tiny_bundle_path, tmp_path / "b")
    chars = (folder / "charset.txt").read_text(encoding="utf-8").split("\n")
    chars[0], chars[1] = chars[1], chars[0]  # same weights, another class order
    (folder / "charset.txt").write_text("\n".join(chars), encoding="utf-8")
    path = profile.save(tmp_path / "me.profile")
    with pytest.raises(ProfileError, match=f"{path}: made for another charset"):
        Recognizer.from_bundle(folder, profile=path)


@pytest.mark.parametrize("kind", ["truncated", "text", "image", "npz_without_map", "empty"])
def test_bad_profile_file_is_a_one_line_error_naming_it(
    kind: str, tiny_bundle_path: Path, profile: WriterProfile, tmp_path: Path
) -> None:
    path = tmp_path / f"{kind}.profile"
    if kind == "truncated":
        path.write_bytes(profile.to_bytes()[:2000])
    elif kind == "text":
        path.write_text("A = I\n", encoding="utf-8")
    elif kind == "image":
        Image.new("L", (8, 8)).save(path, format="PNG")
    elif kind == "npz_without_map":
        with open(path, "wb") as f:
            np.savez(f, weights=np.zeros(3))
    else:
        path.write_bytes(b"")
    with pytest.raises(ProfileError) as info:
        Recognizer.from_bundle(tiny_bundle_path, profile=path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def _write_folder(root: Path, images: np.ndarray, labels: list[str]) -> Path:
    for i, (image, ch) in enumerate(zip(images, labels, strict=True)):
        (root / ch).mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - image).save(root / ch / f"{i}.png")  # dark ink on white, as scanned
    return root


def test_adapt_cli_writes_a_profile_that_recognize_applies(
    tiny_bundle_path: Path, writer: dict, tmp_path: Path, capsys
) -> None:
    data = _write_folder(tmp_path / "mine", *writer["adapt"])
    out = tmp_path / "me.profile"
    assert hccr(["adapt", str(tiny_bundle_path), "--data", str(data), "-o", str(out)]) == 0
    assert "supervised map from 60 of 60 sample(s)" in capsys.readouterr().err
    profile = WriterProfile.load(out)
    rec = Recognizer.from_bundle(tiny_bundle_path)
    assert top1(rec, *writer["test"], profile=profile) >= top1(rec, *writer["test"]) + 0.15
    test = _write_folder(tmp_path / "test", *writer["test"])
    args = ["recognize", str(test), "--model", str(tiny_bundle_path), "--format", "csv"]
    assert hccr([*args, "--profile", str(out)]) == 0
    assert "writer profile" in capsys.readouterr().err


def test_adapt_cli_unsupervised_needs_no_labels(
    tiny_bundle_path: Path, writer: dict, tmp_path: Path
) -> None:
    data = tmp_path / "flat"
    data.mkdir()
    for i, image in enumerate(writer["adapt"][0][:20]):
        Image.fromarray(255 - image).save(data / f"{i}.png")
    out = tmp_path / "me.profile"
    args = ["adapt", str(tiny_bundle_path), "--data", str(data), "-o", str(out)]
    assert hccr(args) == 1 and not out.exists()  # supervised: no labels in a flat folder
    assert hccr([*args, "--unsupervised"]) == 0
    assert WriterProfile.load(out).mode == "unsupervised"


def _one_line_error(capsys, *names: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for name in names:
        assert name in err[0]
    return err[0]


def test_too_few_samples_is_an_error_and_writes_nothing(
    tiny_bundle_path: Path, writer: dict, tmp_path: Path, capsys
) -> None:
    x, y = writer["adapt"]
    data = _write_folder(tmp_path / "few", x[:36:6], y[:36:6])  # 6 samples
    out = tmp_path / "me.profile"
    out.write_bytes(b"previous profile")
    assert hccr(["adapt", str(tiny_bundle_path), "--data", str(data), "-o", str(out)]) == 1
    line = _one_line_error(capsys, str(data), "needs at least 10")
    assert "6 usable sample(s)" in line
    assert out.read_bytes() == b"previous profile"  # left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few", "me.profile"]


def test_label_outside_the_charset_is_an_error_naming_the_file(
    tiny_bundle_path: Path, writer: dict, tmp_path: Path, capsys
) -> None:
    data = _write_folder(tmp_path / "mine", *writer["adapt"])
    stray = data / "永"  # not one of the tiny model's ten characters
    stray.mkdir()
    Image.fromarray(255 - writer["adapt"][0][0]).save(stray / "x.png")
    out = tmp_path / "me.profile"
    args = ["adapt", str(tiny_bundle_path), "--data", str(data), "-o", str(out)]
    assert hccr(args) == 1 and not out.exists()
    _one_line_error(capsys, str(stray / "x.png"), "not one of the model's 10 characters")
    assert hccr([*args, "--skip-unknown"]) == 0
    assert "1 outside the charset left out" in capsys.readouterr().err


def test_bad_adaptation_files_are_one_line_errors(
    tiny_bundle_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "me.profile"
    broken = tmp_path / "broken.gnt"
    broken.write_bytes(b"\x40\x00\x00\x00\xb0\xa1\x05\x00")  # a record cut short
    notimage = tmp_path / "mine" / "一" / "a.png"
    notimage.parent.mkdir(parents=True)
    notimage.write_text("not a png", encoding="utf-8")
    for bad in (broken, tmp_path / "mine", tmp_path / "missing.lmdb"):
        assert hccr(["adapt", str(tiny_bundle_path), "--data", str(bad), "-o", str(out)]) == 1
        _one_line_error(capsys, str(bad))
        assert not out.exists()


def test_profile_applies_in_the_onnx_path(
    tiny_bundle_path: Path, profile: WriterProfile, writer: dict, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from hccr.export import export_onnx

    folder = shutil.copytree(tiny_bundle_path, tmp_path / "b")
    torch_rec = Recognizer.from_bundle(folder, backend="torch")
    export_onnx(torch_rec.model, folder / "model.onnx", TINY_NORM.size)
    rec = Recognizer.from_bundle(folder, backend="onnx")
    x = writer["test"][0]
    expected = torch_rec.probabilities(x, profile)
    # per call: the export cut at the feature layer's pre-activation, then map, ReLU, classifier
    assert rec.profile_backend == "onnx"
    torch.testing.assert_close(rec.probabilities(x, profile), expected, atol=1e-4, rtol=1e-4)
    # set for every call: the map inserted into a copy of the export's graph
    rec.set_profile(profile)
    assert rec.profile_backend == "onnx-mapped"
    torch.testing.assert_close(rec.probabilities(x), expected, atol=1e-4, rtol=1e-4)
    assert not torch.equal(rec.probabilities(x), torch_rec.probabilities(x))  # the map acts
    assert [c.char for c in rec.recognize_prepared(x, 1)[0]] == [
        c.char for c in torch_rec.recognize_prepared(x, 1, profile)[0]
    ]
    rec.set_profile(None)  # back to the export as shipped
    torch.testing.assert_close(
        rec.probabilities(x), torch_rec.probabilities(x), atol=1e-4, rtol=1e-4
    )
    with pytest.raises(ProfileError, match="other weights"):
        rec.set_profile(dataclasses.replace(profile, weights_sha256="0" * 64, tensors={}))
    assert rec.profile is None  # a refused profile changes nothing


def _head_graph(path: Path, after_feature: list, weights: dict[str, np.ndarray]) -> Path:
    """x (B, 4) -> feature layer Gemm -> "z" -> `after_feature` (ending in "h") -> classifier
    Gemm -> "logits" (B, 3), as an export of a student ends."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Gemm", ["x", "F", "e"], ["z"], transB=1), *after_feature,
             helper.make_node("Gemm", ["h", "W", "c"], ["logits"], transB=1)]  # fmt: skip
    consts = {**weights, "s": np.float32(0.01), "zp": np.uint8(0)}  # the int8 step
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_map_goes_in_at_the_feature_layers_pre_activation(tmp_path: Path) -> None:
    """A float export (Gemm, Relu, Gemm) and an int8 one (the quantiser, uint8 at zero point 0,
    does the ReLU's work) both get the map before the ReLU; a graph without one gets none."""
    pytest.importorskip("onnxruntime")
    from onnx import helper

    from hccr.backends import OnnxRunner, mapped_onnx_runner
    from hccr.onnx_graph import onnx_feature_graph, onnx_mapped_graph

    rng = np.random.default_rng(0)
    weights = {"F": rng.normal(size=(4, 4)).astype(np.float32), "e": np.zeros(4, np.float32),
               "W": rng.normal(size=(3, 4)).astype(np.float32), "c": np.ones(3, np.float32)}  # fmt: skip
    x = rng.normal(size=(5, 4)).astype(np.float32)
    z = x @ weights["F"].T
    A = np.eye(4, dtype=np.float32) + 0.5 * rng.normal(size=(4, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    h = np.maximum(z @ A.T + b, 0)
    step = 0.01  # the quantiser's: uint8 at zero point 0 holds 0 to 2.55
    expected = {"float": h, "int8": np.clip(np.round(h / step), 0, 255) * step}
    relu = [helper.make_node("Relu", ["z"], ["h"])]
    quantised = [helper.make_node("QuantizeLinear", ["z", "s", "zp"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["h"])]  # fmt: skip
    for name, after in (("float", relu), ("int8", quantised)):
        path = _head_graph(tmp_path / f"{name}.onnx", after, weights)
        np.testing.assert_allclose(OnnxRunner(onnx_feature_graph(path), 1)(x), z, atol=1e-5)
        mapped = mapped_onnx_runner(onnx_mapped_graph(path, 4), A, b, 1)
        logits = expected[name] @ weights["W"].T + weights["c"]
        np.testing.assert_allclose(mapped(x), logits, atol=1e-4)
        identity = mapped_onnx_runner(onnx_mapped_graph(path, 4), np.eye(4), np.zeros(4), 1)
        np.testing.assert_allclose(identity(x), OnnxRunner(path, 1)(x), atol=1e-5)
    linear = [helper.make_node("Identity", ["z"], ["h"])]  # no ReLU: nothing to map before
    path = _head_graph(tmp_path / "linear.onnx", linear, weights)
    assert onnx_feature_graph(path) is None and onnx_mapped_graph(path, 4) is None


def test_pre_features_are_the_feature_layer_before_its_relu(
    tiny_recognizer: Recognizer, writer: dict
) -> None:
    x = writer["test"][0][:20]
    z = tiny_recognizer.pre_features(x)
    with torch.no_grad():
        feats = tiny_recognizer.model.forward_features(torch.from_numpy(to_model_input(x[:, None])))
    torch.testing.assert_close(torch.relu(z), feats, atol=1e-4, rtol=1e-4)
    assert (z < 0).any()  # the ReLU has something to cut: this is not the classifier's input


def test_version_1_profile_is_refused_with_a_one_line_error(
    tiny_bundle_path: Path, profile: WriterProfile, tmp_path: Path
) -> None:
    """Version 1 mapped the classifier's input; applied before the ReLU it would be wrong."""
    import io
    import json

    with np.load(io.BytesIO(profile.to_bytes())) as z:
        A, b, meta = z["A"], z["b"], json.loads(str(z["meta"]))
    path = tmp_path / "old.profile"
    with open(path, "wb") as f:
        np.savez(f, A=A, b=b, meta=np.array(json.dumps({**meta, "version": 1})))
    with pytest.raises(ProfileError, match=f"^{path}: profile version 1 .* adapt again"):
        Recognizer.from_bundle(tiny_bundle_path, profile=path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter, on purpose
def test_export_without_a_linear_classifier_falls_back_to_torch_with_a_note(
    tiny_bundle_path: Path, profile: WriterProfile, writer: dict, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    folder = shutil.copytree(tiny_bundle_path, tmp_path / "b")
    torch_rec = Recognizer.from_bundle(folder, backend="torch")

    class Negated(torch.nn.Module):  # same logits, but the graph ends in Neg, not a Gemm
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.neg(torch.neg(self.net(x)))

    S = TINY_NORM.size
    torch.onnx.export(Negated(torch_rec.model), (torch.zeros(1, 1, S, S),),
                      str(folder / "model.onnx"), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)  # fmt: skip
    rec = Recognizer.from_bundle(folder, backend="onnx")
    with pytest.warns(UserWarning, match="model.onnx: its graph does not end in feature layer"):
        rec.set_profile(profile)
    assert rec.backend == "onnx" and rec.profile_backend == "torch"
    x = writer["test"][0]
    torch.testing.assert_close(
        rec.probabilities(x), torch_rec.probabilities(x, profile), atol=1e-5, rtol=1e-5
    )


def _synthetic_lmdb(out: Path, per_char: int, seed: int) -> Path:
    """Training-style samples of the tiny characters (what `hccr adapt --prototypes` takes)."""
    from hccr.lmdb_format import LmdbWriter

    rng = np.random.default_rng(seed)
    with LmdbWriter(out) as db:
        for label, ch in enumerate(TINY_CHARS):
            for _ in range(per_char):
                db.add(normalize(render_sample(ch, rng), TINY_NORM), label)
        db.finish({"charset": list(TINY_CHARS), "num_classes": len(TINY_CHARS),
                   "image_size": TINY_NORM.size, "norm": TINY_NORM.to_dict(),
                   "sources": {"tiny": per_char * len(TINY_CHARS)}})  # fmt: skip
    return out


def test_adapt_towards_class_means_of_synthetic_samples(
    tiny_bundle_path: Path, writer: dict, tmp_path: Path, capsys
) -> None:
    """`--prototypes DB.lmdb`: the targets are class means of the model's pre-activations."""
    from hccr.commands.adapt import prototypes_from_lmdbs

    rec = Recognizer.from_bundle(tiny_bundle_path)
    data = _synthetic_lmdb(tmp_path / "synth.lmdb", per_char=4, seed=5)
    means = prototypes_from_lmdbs(rec, [data], progress=False)
    assert means.shape == (10, rec.feat_dim)
    # each class's mean lies nearest its own class's samples
    x = np.stack([normalize(render_sample(ch, np.random.default_rng(9)), TINY_NORM)
                  for ch in TINY_CHARS])  # fmt: skip
    z = rec.pre_features(x).numpy()
    assert (((z[:, None] - means[None]) ** 2).sum(-1).argmin(1) == np.arange(10)).mean() >= 0.9
    out = tmp_path / "me.profile"
    mine = _write_folder(tmp_path / "mine", *writer["adapt"])
    args = ["adapt", str(tiny_bundle_path), "--data", str(mine), "-o", str(out)]
    assert hccr([*args, "--prototypes", str(data)]) == 0
    assert "targets: class means on synth.lmdb" in capsys.readouterr().err
    profile = WriterProfile.load(out)
    assert profile.meta["prototypes"] == "class means on synth.lmdb"
    assert top1(rec, *writer["test"], profile=profile) >= top1(rec, *writer["test"]) + 0.15
