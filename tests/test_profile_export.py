"""Profiling (MACs / FLOPs / params / bytes / latency) and export (TorchScript, ONNX, int8)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hccr.cli import main
from hccr.export import ExportError, export_model, load_exported
from hccr.int8 import Int8Config
from hccr.nets import create_model, list_models
from hccr.profiling import count_flops, count_params, profile_model, state_dict_bytes

SMALL = {"channels": (8, 16, 24, 32), "depths": (1, 1, 1, 1), "feat_dim": 16}
SIZE = 32


# Tiny nets on a shared 2-core machine: every test runs on one intra-op thread (conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def test_flops_are_twice_macs_and_match_a_hand_count() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )
    cost = count_flops(net, input_size=8)
    # conv: 4 outputs x 8 x 8 positions x (1 x 3 x 3) MACs; linear: 256 x 10 MACs
    assert cost["macs"] == 4 * 8 * 8 * 9 + 256 * 10
    assert cost["flops"] == 2 * cost["macs"]


def test_hccrnet_macs_match_a_hand_count() -> None:
    model = create_model(
        "teacher_cnn", num_classes=10, channels=(2, 3), depths=(1, 1), feat_dim=5, pool_size=1
    )
    # 8x8 input: conv 1->2 at 8x8, pool, conv 2->3 at 4x4, pool, avgpool, fc 3->5, classifier 5->10
    expected = 2 * 9 * 64 + 3 * 2 * 9 * 16 + 3 * 5 + 5 * 10
    assert count_flops(model, input_size=8) == {"macs": expected, "flops": 2 * expected}


def test_shift_costs_no_macs() -> None:
    conv = create_model("teacher_cnn", num_classes=10, **SMALL)
    shift = create_model("student_lw_shift", num_classes=10, **SMALL)
    pointwise_only = sum(
        a * b * (SIZE // 2**i) ** 2
        for i, (a, b) in enumerate([(8, 16), (16, 24), (24, 32)], start=1)
    )
    first = 8 * 9 * SIZE * SIZE
    head = 32 * 4 * 16 + 16 * 10
    assert count_flops(shift, SIZE)["macs"] == first + pointwise_only + head
    assert count_flops(shift, SIZE)["macs"] < count_flops(conv, SIZE)["macs"]


def test_profile_model_reports_every_key() -> None:
    model = create_model("student_lw_050", num_classes=10, **SMALL)
    result = profile_model(model, input_size=SIZE, repeats=2, repeats_b64=1)
    assert result["params"] == count_params(model)
    assert result["flops"] == 2 * result["macs"] > 0
    assert result["size_bytes"] == state_dict_bytes(model) >= 4 * result["params"]
    assert result["latency_ms"] > 0 and result["latency_ms_b64"] > 0


@pytest.mark.parametrize("name", list_models())
def test_torchscript_export_matches_eval_model(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **SMALL).eval()
    out = export_model(model, tmp_path / "m.pt", input_size=SIZE)
    x = torch.rand(5, 1, SIZE, SIZE)  # another batch size than the traced one
    torch.testing.assert_close(
        torch.from_numpy(load_exported(out["path"])(x)), model(x).detach(), rtol=1e-4, atol=1e-5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        folded = torch.jit.load(out["path"])
    assert not any("BatchNorm" in m.original_name for m in folded.modules())


@pytest.mark.parametrize("name", ["student_lw", "student_lw_group", "student_lw_shift"])
def test_onnx_export_matches_eval_model(name: str, tmp_path: Path) -> None:
    import onnx

    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **SMALL).eval()
    report = export_model(model, tmp_path / "m.onnx", input_size=SIZE)
    assert report["max_abs_diff"] < 1e-4
    x = torch.rand(7, 1, SIZE, SIZE)
    got = load_exported(tmp_path / "m.onnx")(x)
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "BatchNormalization" not in ops


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hccr.lmdb_format import LmdbWriter
    from hccr.preprocess import NormConfig

    out = tmp_path_factory.mktemp("export") / "calib.lmdb"
    rng = np.random.default_rng(0)
    with LmdbWriter(out) as writer:
        for i in range(48):
            writer.add((rng.random((SIZE, SIZE)) * 255).astype(np.uint8), i % 10)
        writer.finish(
            {
                "charset": list("一十人口日山水火大中"),
                "num_classes": 10,
                "image_size": SIZE,
                "norm": NormConfig(size=SIZE).to_dict(),
                "sources": {},
            }
        )
    return out


def test_int8_export_checks_top1_agreement(tiny_db: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("student_lw", num_classes=10, **SMALL).eval()
    report = export_model(
        model, tmp_path / "q.onnx", SIZE, int8=True, calib=tiny_db, min_agreement=0.0
    )
    assert report["int8"] and report["n_check"] == 48 and 0.0 <= report["top1_agreement"] <= 1.0
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    # 7-bit weights: full-range int8 saturates the int16 sums of AVX2 CPUs without VNNI
    weights = [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    assert weights and all(-64 <= w.min() and w.max() <= 64 for w in weights)


def test_export_failing_the_agreement_check_leaves_no_file(tiny_db: Path, tmp_path: Path) -> None:
    model = create_model("student_lw_050", num_classes=10, **SMALL).eval()
    with pytest.raises(ExportError, match="top-1 agreement"):
        export_model(model, tmp_path / "m.pt", SIZE, check=tiny_db, min_agreement=1.01)
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_unknown_format_and_int8_without_calibration(tmp_path: Path) -> None:
    model = create_model("student_lw_050", num_classes=10, **SMALL)
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(model, tmp_path / "m.tflite")
    with pytest.raises(ExportError, match="calibration"):
        export_model(model, tmp_path / "m.onnx", int8=True)


def test_profile_cli_json_and_compare(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--num-classes", "10", "--input-size", "32", "--repeats", "1", "--repeats-b64", "1"]
    assert main(["profile", "student_lw_050", "--json", *args]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("params", "flops", "macs", "size_bytes", "latency_ms", "latency_ms_b64"):
        assert result[key] > 0
    assert (
        main(["profile", "teacher_cnn", "--compare", "student_lw_050", "--no-latency", *args]) == 0
    )
    table = capsys.readouterr().out
    assert "teacher_cnn" in table and "student_lw_050" in table and "xFLOPs" in table


def test_profile_cli_unknown_model_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "no_such_model", "--no-latency"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "teacher_cnn" in err


def test_profile_and_export_cli_read_a_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hccr.bundle import save_bundle
    from hccr.charset import Charset
    from hccr.preprocess import NormConfig

    model = create_model("student_lw_050", num_classes=10, **SMALL)
    bundle = save_bundle(
        tmp_path / "b",
        model,
        "student_lw_050",
        model.kwargs,
        Charset("一十人口日山水火大中"),
        NormConfig(size=SIZE),
    )
    assert main(["profile", str(bundle), "--json", "--no-latency"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == count_params(model) and result["input_size"] == SIZE
    assert main(["export", str(bundle), "--json"]) == 0  # default: model.onnx inside the bundle
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] < 1e-4 and Path(report["path"]) == bundle / "model.onnx"
    from hccr.recognizer import Recognizer

    assert Recognizer.from_bundle(bundle, backend="onnx").backend == "onnx"


def test_export_bundle_with_half_weights_ships_a_consistent_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hccr.bundle import load_bundle, save_bundle
    from hccr.charset import Charset
    from hccr.export import export_is_current
    from hccr.preprocess import NormConfig
    from hccr.recognizer import Recognizer

    torch.manual_seed(0)
    model = create_model("student_lw_fast", num_classes=10, **SMALL)
    run = save_bundle(tmp_path / "run", model, "student_lw_fast", model.kwargs,
                      Charset("一十人口日山水火大中"), NormConfig(size=SIZE))  # fmt: skip
    ship = tmp_path / "ship"
    assert main(["export", str(run), "--bundle", str(ship), "--half-weights", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(ship / "model.onnx")
    state = torch.load(ship / "weights.pt", weights_only=True)
    floats = [v for v in state.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)  # 2 bytes per weight
    assert export_is_current(ship / "model.onnx", ship / "weights.pt") is True
    shipped = load_bundle(ship).model
    x = torch.rand(4, 1, SIZE, SIZE)
    with torch.no_grad():  # float16 storage rounds the weights, nothing more
        torch.testing.assert_close(shipped(x), model.eval()(x), atol=2e-2, rtol=2e-2)
    assert Recognizer.from_bundle(ship).backend == "onnx"
    assert main(["export", "student_lw", "--half-weights", "-o", str(tmp_path / "x.onnx")]) == 1
    assert "--half-weights needs --bundle" in capsys.readouterr().err


def test_export_over_a_shipped_bundle_keeps_its_hand_written_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-exporting a new run over models/<name> must not replace the model card written there."""
    from hccr.bundle import save_bundle
    from hccr.charset import Charset
    from hccr.preprocess import NormConfig

    model = create_model("student_lw_fast", num_classes=10, **SMALL)
    charset = Charset("一十人口日山水火大中")
    run = save_bundle(tmp_path / "run", model, "student_lw_fast", model.kwargs, charset,
                      NormConfig(size=SIZE), metrics={"top1": 0.25})  # fmt: skip
    ship = tmp_path / "ship"
    assert main(["export", str(run), "--bundle", str(ship)]) == 0
    generated = (ship / "README.md").read_text()
    assert "0.2500" in generated  # a fresh bundle gets the generated card
    save_bundle(run, model, "student_lw_fast", model.kwargs, charset, NormConfig(size=SIZE),
                metrics={"top1": 0.75})  # fmt: skip
    capsys.readouterr()
    assert main(["export", str(run), "--bundle", str(ship)]) == 0
    assert "0.7500" in (ship / "README.md").read_text()  # a generated card follows the weights
    assert "hand-written" not in capsys.readouterr().err
    card = "# ship\n\nWritten by a person: data, recipe, limits.\n"
    (ship / "README.md").write_text(card)
    assert main(["export", str(run), "--bundle", str(ship)]) == 0
    assert (ship / "README.md").read_text() == card
    assert "kept the hand-written model card" in capsys.readouterr().err


def test_calibration_samples_spread_over_the_whole_lmdb(tiny_db: Path) -> None:
    """Packed data is sorted by class: calibrating on the first samples would see few classes."""
    from hccr.int8 import LmdbCalibrationReader

    reader = LmdbCalibrationReader(tiny_db, num_samples=4, batch_size=3)
    assert reader.items == [(0, 0), (0, 16), (0, 31), (0, 47)]
    assert [len(b) for b in reader.batches()] == [3, 1]


def test_calibration_mix_shares_the_samples_between_lmdbs(tiny_db: Path) -> None:
    """A mix of styles (one LMDB each) calibrates on an equal share of each."""
    from hccr.int8 import LmdbCalibrationReader

    reader = LmdbCalibrationReader([tiny_db, tiny_db], num_samples=5, batch_size=4)
    assert [k for k, _ in reader.items] == [0, 0, 0, 1, 1]
    labelled = list(reader.labelled_batches())
    assert [len(y) for _, y in labelled] == [4, 1] and labelled[0][1].tolist() == [0, 4, 7, 0]


def test_int8_leaves_the_first_layers_and_the_classifier_in_float(
    tiny_db: Path, tmp_path: Path
) -> None:
    """The default recipe: the first Conv layers (where real writers lost 4 pt) and the
    classifier (logits) in float, everything between quantised; the report names them."""
    import onnx

    torch.manual_seed(0)
    model = create_model("student_lw", num_classes=10, **SMALL).eval()
    out = tmp_path / "q.onnx"
    report = export_model(model, out, SIZE, int8=True, calib=[tiny_db, tiny_db],
                          reallike=tiny_db, min_agreement=0.0)  # fmt: skip
    graph = onnx.load(str(out)).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    compute = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]

    def quantised(node: onnx.NodeProto) -> bool:  # int8 weights, dequantised for the node
        source = produced_by.get(node.input[1])  # None: a float initializer
        return source is not None and source.op_type == "DequantizeLinear"

    assert [quantised(n) for n in compute[:4]] == [False] * 4
    assert not quantised(compute[-1]) and all(quantised(n) for n in compute[4:-1])
    assert [o.name for o in graph.output] == ["logits"] and "logits" in compute[-1].output
    kept = report["int8_recipe"]["float_nodes_kept"]
    assert kept == [n.name for n in compute[:4]] + [compute[-1].name]
    assert report["int8_recipe"]["n_calib"] == 96  # 48 + 48: every sample of both LMDBs
    for key in ("reallike_top1_agreement", "reallike_top1_float", "reallike_top1_export"):
        assert 0.0 <= report[key] <= 1.0
    assert report["reallike_n_check"] == 48

    everything = Int8Config(float_first=len(compute), float_head=True)
    with pytest.raises(ValueError, match="nothing to quantise"):
        export_model(model, tmp_path / "all.onnx", SIZE, int8=True, calib=tiny_db,
                     int8_config=everything)  # fmt: skip
    assert not (tmp_path / "all.onnx").exists()
