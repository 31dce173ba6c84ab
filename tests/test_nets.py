"""Networks: every registered architecture builds, runs, trains and rebuilds from its kwargs."""

from __future__ import annotations

import json

import pytest
import torch

from hccr.nets import UnknownModelError, create_model, list_models, model_kwargs
from hccr.profiling import count_macs, count_params

SMALL = {"channels": (8, 16, 24, 32), "feat_dim": 16}


# Tiny nets on a shared 2-core machine: every test runs on one intra-op thread (conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_gives_every_parameter_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)  # shipped widths; 32 px keeps it fast
    logits = model(torch.rand(2, 1, 32, 32))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [48, 96])
def test_other_input_sizes_work(name: str, size: int) -> None:
    model = create_model(name, num_classes=7, **SMALL).eval()
    assert model(torch.rand(2, 1, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", list_models())
def test_features_head_and_stages_seams(name: str) -> None:
    model = create_model(name, num_classes=7, **SMALL).eval()
    x = torch.rand(2, 1, 32, 32)
    feat = model.forward_features(x)
    assert feat.shape == (2, model.feat_dim)
    torch.testing.assert_close(model.forward_head(feat), model(x))
    stages = model.forward_stages(x)
    assert len(stages) == 4  # same stage count as the teacher, for hint adapters
    assert [s.shape[1] for s in stages] == model.stage_channels
    assert [s.shape[-1] for s in stages] == [32, 16, 8, 4]


@pytest.mark.parametrize("name", list_models())
def test_rebuilds_from_json_kwargs_and_loads_strictly(name: str) -> None:
    model = create_model(name, num_classes=5, **SMALL).eval()
    kwargs = json.loads(json.dumps(model_kwargs(model)))
    rebuilt = create_model(model.arch, **kwargs).eval()
    rebuilt.load_state_dict(model.state_dict())  # strict
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(rebuilt(x), model(x))
    assert rebuilt.kwargs == model.kwargs


@pytest.fixture(scope="module")
def teacher_3755() -> torch.nn.Module:
    return create_model("teacher_cnn")


def test_student_meets_compression_goals_at_3755_classes(teacher_3755: torch.nn.Module) -> None:
    student = create_model("student_lw")
    assert count_params(teacher_3755) >= 10 * count_params(student)
    assert count_macs(teacher_3755) >= 4 * count_macs(student)
    assert 20e6 < 4 * count_params(teacher_3755) < 100e6  # "tens of MB" of float32 weights


@pytest.mark.parametrize(
    "name, kind",
    [("student_lw_group", "group"), ("student_lw_dw", "dw"), ("student_lw_shift", "shift")],
)
def test_cheap_students_transform_the_teacher_convs_only(
    teacher_3755: torch.nn.Module, name: str, kind: str
) -> None:
    student = create_model(name)
    for key in ("channels", "depths", "feat_dim", "pool_size"):
        assert student.kwargs[key] == teacher_3755.kwargs[key]
    assert student.kwargs["blocks"] == ["conv"] + [kind] * 9
    assert count_macs(student, 32) < count_macs(teacher_3755, 32) / 3


def test_unknown_model_error_lists_known_names() -> None:
    with pytest.raises(UnknownModelError, match="known: .*student_lw.*teacher_cnn"):
        create_model("resnet_9000")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": (8, 16, 24)}, "channels has 3 entries"),
        ({"blocks": ["conv", "fancy"] + ["conv"] * 8}, "unknown block type 'fancy'"),
        ({"ranks": {"blocks.99": 3}}, "not a layer"),
        (
            {"blocks": ["conv"] * 9 + ["dw"], "ranks": {"blocks.9": 3}},
            "applies to 'conv' blocks only",
        ),
    ],
)
def test_bad_kwargs_raise_one_line_value_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model("teacher_cnn", num_classes=10, **kwargs)
