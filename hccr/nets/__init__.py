"""Architectures: importing this package fills the registry (teacher_cnn, student_lw, ...)."""

from hccr.nets import student, teacher  # noqa: F401  (registers the builders)
from hccr.nets.cnn import HccrNet
from hccr.nets.registry import (
    UnknownModelError,
    create_model,
    expand_input_channels,
    input_channels,
    is_model,
    list_models,
    model_kwargs,
    register_model,
)

__all__ = [
    "HccrNet",
    "UnknownModelError",
    "create_model",
    "expand_input_channels",
    "input_channels",
    "is_model",
    "list_models",
    "model_kwargs",
    "register_model",
]
